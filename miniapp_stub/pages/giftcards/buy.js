// Gift cards: buy one of a design's face values, see my cards, give one to a friend (the
// share button sends the gift's own share path through onShareAppMessage).
const session = require('../../utils/session.js')
const giftcards = require('../../utils/giftcards.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { designs: [], cards: [], gift: null, error: '', busy: false },
  methods: {
    onLoad() {
      return this.load()
    },
    load() {
      return guard(this, async () => {
        const api = session.api()
        const designs = (await giftcards.designs(api)).map((d) => ({ ...d, faces: d.face_values_fen.map(yuan) }))
        const cards = (await giftcards.mine(api)).map((c) => ({ ...c, balance: yuan(c.balance_fen) }))
        this.setData({ designs, cards })
      })
    },
    buy(e) {
      const api = session.api()
      const { design, face } = e.currentTarget.dataset
      return guard(this, async () => {
        const order = await giftcards.buy(api, Number(design), Number(face), { key: tapKey(this, api, 'buy') })
        await api.pay(order.order_no)
        tapDone(this, 'buy') // paid: the next tap is a new one
        return order
      })
    },
    give(e) {
      const api = session.api()
      const card = Number(e.currentTarget.dataset.card)
      return guard(this, async () => {
        const gift = await giftcards.give(api, card, '送你一张好店+礼品卡', { key: tapKey(this, api, `give-${card}`) })
        tapDone(this, `give-${card}`)
        this.setData({ gift })
        return gift
      })
    },
    onShareAppMessage() {
      if (!this.data.gift) return { title: '好店+ 礼品卡', path: '/pages/giftcards/buy' }
      return giftcards.shareMessage(this.data.gift)
    },
  },
})
