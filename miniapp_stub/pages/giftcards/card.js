// One of my gift cards with its ledger (every change of its balance).
const session = require('../../utils/session.js')
const { yuan } = require('../../utils/money.js')
const { guard } = require('../../utils/page.js')

Component({
  data: { card: null, entries: [], error: '', busy: false },
  methods: {
    onLoad(query) {
      const id = Number(query.id)
      return guard(this, async () => {
        const api = session.api()
        const card = (await api.get('/me/gift-cards')).items.find((c) => c.id === id)
        const entries = (await api.get(`/me/gift-cards/${id}/ledger`)).items
        this.setData({ card: card ? { ...card, balance: yuan(card.balance_fen) } : null, entries: entries.map((x) => ({ ...x, amount: yuan(x.amount_fen) })) })
      })
    },
  },
})
