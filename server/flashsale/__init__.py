"""Flash sales (秒杀): Redis Lua inventory, stream-fed order materialisation, re-warm."""
