// The gift landing a share opens: who sends it, how much, and "claim".
const session = require('../../utils/session.js')
const giftcards = require('../../utils/giftcards.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { gift: null, amount: '', scene: '', card: null, error: '', busy: false },
  methods: {
    onLoad(query) {
      return guard(this, async () => {
        const view = await giftcards.landing(session.api(), query)
        this.setData({ gift: view.gift, amount: yuan(view.gift.amount_fen), scene: view.scene || '' })
      })
    },
    claim() {
      const api = session.api()
      return guard(this, async () => {
        const card = await giftcards.claim(api, this.data.gift.gift_no, { scene: this.data.scene, key: tapKey(this, api, 'claim') })
        tapDone(this, 'claim')
        this.setData({ card })
      })
    },
  },
})
