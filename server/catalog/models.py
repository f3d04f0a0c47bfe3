"""The catalog: categories, products, SKUs (price in fen)."""

from __future__ import annotations

from tortoise import fields

from server.infra.models import TimestampedModel


class Category(TimestampedModel):
    name = fields.CharField(max_length=64)
    sort = fields.IntField(default=0)

    class Meta:
        table = "category"


class Product(TimestampedModel):
    category = fields.ForeignKeyField("catalog.Category", related_name="products")
    name = fields.CharField(max_length=128)
    description = fields.TextField(default="")
    on_sale = fields.BooleanField(default=True)

    class Meta:
        table = "product"


class Sku(TimestampedModel):
    product = fields.ForeignKeyField("catalog.Product", related_name="skus")
    name = fields.CharField(max_length=128)
    price_fen = fields.IntField()

    class Meta:
        table = "sku"
