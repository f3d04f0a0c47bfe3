// A flash sale: grab (Redis answers at once with the order's number), wait for the order,
// pay it.
const session = require('../../utils/session.js')
const flashsale = require('../../utils/flashsale.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { sale: null, price: '', order: null, error: '', busy: false },
  methods: {
    onLoad(query) {
      return guard(this, async () => {
        const sale = await flashsale.sale(session.api(), Number(query.id))
        this.setData({ sale, price: yuan(sale.price_fen) })
      })
    },
    grab() {
      const api = session.api()
      return guard(this, async () => {
        const grabbed = await flashsale.grab(api, this.data.sale.id, { key: tapKey(this, api, 'grab') })
        const order = await flashsale.orderOf(api, grabbed.order_no)
        await api.pay(order.order_no)
        tapDone(this, 'grab') // paid: the next tap is a new one
        this.setData({ order })
      })
    },
  },
})
