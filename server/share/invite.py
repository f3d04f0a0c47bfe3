"""The `invite` share kind: a member invites friends to the mini-program."""

from __future__ import annotations

from server.infra.errors import Forbidden
from server.share.service import register_kind


async def validate_invite(target: str, sharer_member_id: int) -> None:
    """An invitation names its sender: a member may only send their own."""
    if target != str(sharer_member_id):
        raise Forbidden(
            "an invitation can only be shared by the member it names",
            code="SHARE_TARGET_FORBIDDEN",
        )


register_kind("invite", "pages/index/index", validate_invite, param="inviter")
