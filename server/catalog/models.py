"""The catalog: categories, products, SKUs (price in fen), and what each store sells."""

from __future__ import annotations

from tortoise import fields

from server.infra.models import TimestampedModel


class Category(TimestampedModel):
    name = fields.CharField(max_length=64, unique=True)
    sort = fields.IntField(default=0)
    visible = fields.BooleanField(default=True)

    class Meta:
        table = "category"


class Product(TimestampedModel):
    category = fields.ForeignKeyField(
        "catalog.Category", related_name="products", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=128)
    description = fields.TextField(default="")
    on_sale = fields.BooleanField(default=True)
    images = fields.JSONField(default=list)  # image URLs, first is the cover
    sort = fields.IntField(default=0)

    class Meta:
        table = "product"


class Sku(TimestampedModel):
    product = fields.ForeignKeyField("catalog.Product", related_name="skus")
    name = fields.CharField(max_length=128)
    price_fen = fields.IntField()  # list price; a store may override it (StoreSku)
    code = fields.CharField(max_length=64, unique=True, null=True)  # barcode / ERP code
    images = fields.JSONField(default=list)
    attributes = fields.JSONField(default=dict)  # {"weight": "200g", "flavour": "spicy"}
    on_sale = fields.BooleanField(default=True)

    class Meta:
        table = "sku"


class StoreSku(TimestampedModel):
    """A SKU a store sells itself (pickup, takeout): availability, its price, its stock."""

    store = fields.ForeignKeyField("stores.Store", related_name="store_skus")
    sku = fields.ForeignKeyField("catalog.Sku", related_name="store_skus")
    available = fields.BooleanField(default=True)
    price_override_fen = fields.IntField(null=True)  # None: the SKU's list price
    stock = fields.IntField(default=0)  # never negative: changed only by conditional UPDATEs

    class Meta:
        table = "store_sku"
        unique_together = (("store", "sku"),)
