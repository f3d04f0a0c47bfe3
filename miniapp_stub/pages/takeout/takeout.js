// Takeout: pick an address (or add one where I am), the store that delivers there, a cart,
// the quote, then place and pay; tracking opens afterwards.
const session = require('../../utils/session.js')
const takeout = require('../../utils/takeout.js')
const pickup = require('../../utils/pickup.js')
const locator = require('../../utils/locator.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { addresses: [], addressId: 0, stores: [], storeId: 0, items: [], cart: {}, quote: null, payable: '', error: '', busy: false },
  methods: {
    onLoad() {
      return guard(this, async () => {
        const addresses = await takeout.addresses(session.api())
        this.setData({ addresses })
        if (addresses.length) await this.useAddress(addresses[0].id)
      })
    },
    addHere(form) {
      const api = session.api()
      return guard(this, async () => {
        const here = await locator.whereAmI(wx)
        const a = await takeout.addAddress(api, { ...form, lat: here.lat, lng: here.lng })
        this.setData({ addresses: [a, ...this.data.addresses] })
        await this.useAddress(a.id)
      })
    },
    async useAddress(addressId) {
      const stores = await takeout.stores(session.api(), addressId)
      this.setData({ addressId, stores })
      if (stores.length) await this.useStore(stores[0].id)
    },
    async useStore(storeId) {
      const items = await pickup.menu(session.api(), storeId)
      this.setData({ storeId, items: items.map((i) => ({ ...i, price: yuan(i.price_fen) })), cart: {}, quote: null })
    },
    add(e) {
      const sku = e.currentTarget.dataset.sku
      this.setData({ cart: { ...this.data.cart, [sku]: (this.data.cart[sku] || 0) + 1 } })
      return guard(this, async () => {
        const quote = await takeout.quote(session.api(), this.data.storeId, this.data.addressId, this.data.cart)
        this.setData({ quote, payable: yuan(quote.payable_fen) })
      })
    },
    checkout(note) {
      const api = session.api()
      return guard(this, async () => {
        const { storeId, addressId, cart } = this.data
        const order = await takeout.place(api, storeId, addressId, cart, { note, key: tapKey(this, api, 'order') })
        await api.pay(order.order_no)
        tapDone(this, 'order') // paid: the next tap is a new one
        wx.navigateTo({ url: `/pages/takeout/track?no=${order.order_no}` })
        return order
      })
    },
  },
})
