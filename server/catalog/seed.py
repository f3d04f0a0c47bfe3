"""Demo catalog: 12 categories of snacks, 204 products, ~300 SKUs, and what each demo store
sells (a subset with stock; the demo store WH0001 sells everything, with deep stock).

Idempotent: categories by name, products by (category, name), SKUs by code; a store's
assortment is added only to stores that sell nothing yet.
"""

from __future__ import annotations

import random
from typing import Any

from redis.asyncio import Redis

from server.catalog.models import Category, Product, Sku, StoreSku
from server.settings import Settings
from server.stores.models import Store

DEMO_STORE_CODE = "WH0001"
DEMO_STORE_STOCK = 100_000
PER_STORE = 36  # SKUs an ordinary demo store sells

# (category, base price in fen, products)
CATALOG: list[tuple[str, int, list[str]]] = [
    (
        "肉类零食",
        2590,
        "蜜汁猪肉脯 高蛋白肉脯 手撕牛肉干 风干牛肉 麻辣牛肉粒 五香卤牛肉 灯影牛肉丝 "
        "卤味鸭脖 甜辣鸭锁骨 香辣鸭翅 柠檬凤爪 泡椒凤爪 黑鸭鸭舌 麻辣牛板筋 烟熏鸡腿 盐焗鸡翅 "
        "香肠小肉枣".split(),
    ),
    (
        "坚果炒货",
        2990,
        "每日坚果 碧根果 夏威夷果 开心果 巴旦木 炭烧腰果 手剥松子 山核桃仁 "
        "奶香瓜子 焦糖瓜子 蒜香花生 多味花生 蟹黄蚕豆 兰花豆 混合坚果仁 榛子 琥珀核桃".split(),
    ),
    (
        "果干蜜饯",
        1590,
        "芒果干 草莓干 蓝莓干 葡萄干 黄桃干 无花果干 话梅 九制陈皮 冰糖杨梅 "
        "猕猴桃干 新疆红枣 灰枣 香蕉片 菠萝干 山楂条 柠檬片 西梅".split(),
    ),
    (
        "糕点饼干",
        1290,
        "手撕面包 蛋黄酥 肉松小贝 绿豆糕 凤梨酥 鸡蛋卷 苏打饼干 乳酪蛋糕 "
        "铜锣烧 麻薯 桃酥 鸡蛋仔 芝士薄脆 老婆饼 瑞士卷 沙琪玛 米饼".split(),
    ),
    (
        "糖果巧克力",
        1490,
        "牛轧糖 水果软糖 夹心巧克力 黑巧克力 奶糖 棉花糖 薄荷糖 太妃糖 "
        "酸奶果粒 花生糖 芝麻糖 椰子糖 榛子巧克力 雪花酥 牛奶片 水果硬糖 话梅糖".split(),
    ),
    (
        "素食山珍",
        990,
        "辣条 五香豆干 魔芋爽 海带丝 素牛筋 卤香豆腐干 笋尖 香菇脆 藕片 "
        "土豆片 麻辣豆皮 千页豆腐 蘑菇干 卤鹌鹑蛋 毛豆 腐竹 素毛肚".split(),
    ),
    (
        "海味零食",
        1990,
        "鱿鱼丝 小鱼仔 烤鱼片 即食虾干 即食海苔 鳕鱼肠 香酥小黄鱼 蟹柳 "
        "墨鱼仔 海苔卷 深海鱼豆腐 鱿鱼足片 扇贝肉 碳烤鱿鱼 虾片 小龙虾尾 脆鱼皮".split(),
    ),
    (
        "膨化食品",
        890,
        "原味薯片 虾条 玉米脆 焦糖爆米花 锅巴 薯条 洋葱圈 雪饼 米果 "
        "山药脆片 芝士球 豌豆脆 猫耳朵 小麻花 蔬菜脆 粟米条 鸡肉卷".split(),
    ),
    (
        "饮料冲调",
        690,
        "椰子水 柠檬茶 酸梅汤 乌龙茶 燕麦奶 冻干咖啡 西湖藕粉 黑芝麻糊 "
        "豆浆粉 蜂蜜柚子茶 原味奶茶 鲜榨橙汁 苏打气泡水 红枣桂圆茶 菊花茶 希腊酸奶 核桃乳".split(),
    ),
    (
        "礼盒",
        9900,
        "坚果礼盒 肉食礼盒 年货大礼包 中秋月饼礼盒 零食大礼包 果干礼盒 糕点礼盒 "
        "端午粽子礼盒 海味礼盒 巧克力礼盒 茶点礼盒 儿童零食礼盒 办公室零食箱 新年福袋 "
        "春节坚果礼 伴手礼盒 企业定制礼盒".split(),
    ),
    (
        "辣味零食",
        1690,
        "麻辣小龙虾 香辣花生 麻辣豆干 香辣鱼仔 麻辣鸭肠 辣味牛肉丝 麻辣魔芋 "
        "香辣藕片 麻辣兔头 香辣蟹脚 辣卤鹌鹑蛋 火锅味薯片 麻辣锅巴 香辣鸡胗 麻辣牛肚 辣子鸡 "
        "周黑鸭风味鸭脖".split(),
    ),
    (
        "进口零食",
        2490,
        "日式抹茶饼干 韩国海苔 泰国榴莲干 越南腰果 马来西亚白咖啡 比利时巧克力 "
        "意大利威化 德国小熊软糖 美国杏仁 澳洲燕麦 新西兰蜂蜜 菲律宾芒果干 印尼虾片 "
        "西班牙橄榄 丹麦曲奇 瑞士黑巧 土耳其软糖".split(),
    ),
]

SIZES = [("小包装", 0.5), ("标准装", 1.0), ("家庭装", 2.2)]


def _sku_specs(rng: random.Random, base: int, gift: bool) -> list[tuple[str, int, dict[str, str]]]:
    if gift:
        return [("礼盒装", base, {"规格": "礼盒"})]
    n = rng.choice([1, 1, 2, 2, 3])
    out = []
    for label, factor in SIZES[:n] if n > 1 else [SIZES[1]]:
        grams = int(100 * factor) // 10 * 10
        price = int(round(base * factor * rng.uniform(0.8, 1.25) / 10) * 10 - 10 + 9)
        out.append((label, max(190, price), {"净含量": f"{grams}g"}))
    return out


async def _seed_catalog(progress: Any) -> list[int]:
    rng = random.Random(4)
    cats = {c.name: c for c in await Category.all()}
    for sort, (name, _base, _products) in enumerate(CATALOG):
        if name not in cats:
            cats[name] = await Category.create(name=name, sort=sort)
    have_products = {(p.category_id, p.name): p for p in await Product.all()}  # type: ignore[attr-defined]
    have_skus = set(await Sku.filter(code__not_isnull=True).values_list("code", flat=True))
    new_skus: list[Sku] = []
    n = 0
    for name, base, products in CATALOG:
        cat = cats[name]
        for sort, pname in enumerate(products):
            n += 1
            prod = have_products.get((cat.id, pname))
            if prod is None:
                prod = await Product.create(
                    category_id=cat.id,
                    name=pname,
                    description=f"好店精选{pname}，{name}人气款。",
                    images=[f"https://img.haodian.example/p/{n:04d}.jpg"],
                    sort=sort,
                )
                progress(1)
            for i, (label, price, attrs) in enumerate(_sku_specs(rng, base, name == "礼盒")):
                code = f"LP{n:04d}{i + 1}"
                if code not in have_skus:
                    new_skus.append(
                        Sku(
                            product_id=prod.id,
                            name=label,
                            price_fen=price,
                            code=code,
                            attributes=attrs,
                            images=[f"https://img.haodian.example/s/{code}.jpg"],
                        )
                    )
    if new_skus:
        await Sku.bulk_create(new_skus, batch_size=500)
        progress(len(new_skus))
    return list(await Sku.filter(code__startswith="LP").order_by("id").values_list("id", flat=True))


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    sku_ids = await _seed_catalog(progress)
    if not sku_ids:
        return
    selling = set(await StoreSku.all().distinct().values_list("store_id", flat=True))
    stores = await Store.filter(closed=False).order_by("id").values_list("id", "code")
    rows: list[StoreSku] = []
    popular = sku_ids[: len(sku_ids) // 3]  # every store carries some of the first third
    for store_id, code in stores:
        if store_id in selling:
            continue
        rng = random.Random(code)
        if code == DEMO_STORE_CODE:
            picks = sku_ids
        else:
            picks = sorted(
                set(rng.sample(popular, min(PER_STORE // 2, len(popular))))
                | set(rng.sample(sku_ids, min(PER_STORE // 2, len(sku_ids))))
            )
        for sku_id in picks:
            stock = DEMO_STORE_STOCK if code == DEMO_STORE_CODE else rng.randint(0, 120)
            rows.append(StoreSku(store_id=store_id, sku_id=sku_id, stock=stock))
        if len(rows) >= 5000:
            await StoreSku.bulk_create(rows)
            progress(len(rows))
            rows = []
    if rows:
        await StoreSku.bulk_create(rows)
        progress(len(rows))
