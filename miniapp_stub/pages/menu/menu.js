// A store's menu and a pickup order: add to the cart, place, pay, then show the pickup code.
const session = require('../../utils/session.js')
const pickup = require('../../utils/pickup.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { storeId: 0, items: [], cart: {}, total: '¥0.00', order: null, error: '', busy: false },
  methods: {
    onLoad(query) {
      this.setData({ storeId: Number(query.store) })
      return guard(this, async () => {
        const items = await pickup.menu(session.api(), this.data.storeId)
        this.setData({ items: items.map((i) => ({ ...i, price: yuan(i.price_fen) })) })
      })
    },
    add(e) {
      const sku = e.currentTarget.dataset.sku
      const cart = { ...this.data.cart, [sku]: (this.data.cart[sku] || 0) + 1 }
      const total = this.data.items.reduce((sum, i) => sum + (cart[i.sku_id] || 0) * i.price_fen, 0)
      this.setData({ cart, total: yuan(total) })
    },
    checkout() {
      const api = session.api()
      return guard(this, async () => {
        const order = await pickup.placeOrder(api, this.data.storeId, this.data.cart, { key: tapKey(this, api, 'order') })
        await api.pay(order.order_no)
        tapDone(this, 'order') // paid: the next tap is a new one
        this.setData({ order: await pickup.order(api, order.order_no), cart: {} })
      })
    },
  },
})
