// Store locator: where the shopper is (wx.getLocation in GCJ-02, the coordinates the store
// index keeps), then the nearest stores for a service.
'use strict'

function whereAmI(wx) {
  return new Promise((resolve, reject) => {
    wx.getLocation({
      type: 'gcj02',
      success: (res) => resolve({ lat: res.latitude, lng: res.longitude }),
      fail: reject,
    })
  })
}

async function nearby(api, wx, { service, radiusM = 5000, limit = 20 } = {}) {
  const here = await whereAmI(wx)
  const out = await api.get('/stores/nearby', {
    lat: here.lat, lng: here.lng, radius_m: radiusM, limit, service,
  })
  return { here, stores: out.items }
}

module.exports = { whereAmI, nearby }
