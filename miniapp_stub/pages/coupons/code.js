// A coupon's live code: a new code before the current one expires, shown as digits (the
// scanner reads the barcode/QR of the same string); stops when the page goes away.
const session = require('../../utils/session.js')
const { liveCode, couponCode } = require('../../utils/livecode.js')

Component({
  data: { couponId: 0, code: '', digits: '', expiresIn: 0, error: '', busy: false },
  methods: {
    onLoad(query) {
      const couponId = Number(query.id)
      this.setData({ couponId })
      this._live = liveCode(couponCode(session.api(), couponId), (c) => {
        this.setData({ code: c.code, digits: c.digits, expiresIn: c.expires_in, error: '' })
      }, { onError: (err) => this.setData({ error: err.message }) })
      return this._live.start()
    },
    onShow() {
      if (this._live && !this._live.pending) this._live.refresh()
    },
    onUnload() {
      if (this._live) this._live.stop()
    },
    refresh() {
      return this._live.refresh()
    },
  },
  lifetimes: {
    detached() { this.onUnload() },
  },
})
