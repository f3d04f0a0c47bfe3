// The mini-program's entry: sign in once at launch; pages reach the API through
// utils/session.js (which also signs in on first use, so a page opened from a share works
// before this finishes).
const session = require('./utils/session.js')

App({
  onLaunch() {
    session.api().login().catch((err) => {
      wx.showToast({ title: (err && err.message) || '登录失败', icon: 'none' })
    })
  },
})
