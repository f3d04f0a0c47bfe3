// Takeout tracking (the page a status message opens): status, rider and timeline, refreshed
// while the page is open.
const session = require('../../utils/session.js')
const takeout = require('../../utils/takeout.js')
const { guard } = require('../../utils/page.js')

const EVERY_MS = 15000

Component({
  data: { orderNo: '', track: null, error: '', busy: false },
  methods: {
    onLoad(query) {
      this.setData({ orderNo: query.no })
      this._timer = setInterval(() => this.load(), EVERY_MS)
      return this.load()
    },
    load() {
      return guard(this, async () => this.setData({ track: await takeout.track(session.api(), this.data.orderNo) }))
    },
    onUnload() {
      clearInterval(this._timer)
      this._timer = null
    },
  },
  lifetimes: {
    detached() { this.onUnload() },
  },
})
