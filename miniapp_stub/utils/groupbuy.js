// Group-buy: open a group on an activity (the leader pays first), share it, others join from
// the share's scene; the group forms when every seat is paid.
'use strict'

const share = require('./share.js')
const { until } = require('./poll.js')

async function activities(api) {
  return (await api.get('/group-buys')).items
}

async function activity(api, activityId) {
  return api.get(`/group-buys/${activityId}`)
}

async function open(api, activityId, { key } = {}) {
  return api.post(`/group-buys/${activityId}/groups`, undefined, { key })
}

async function join(api, groupNo, { scene, key } = {}) {
  return api.post(`/groups/${groupNo}/join`, scene ? { scene } : {}, { key })
}

async function group(api, groupNo) {
  return api.get(`/groups/${groupNo}`)
}

// After the leader pays, the group opens to friends a moment later (the payment's
// notification moves it): the leader's page waits for that before it offers the share.
function opened(api, groupNo) {
  return until(() => group(api, groupNo), (g) => g.status !== 'forming')
}

async function shareGroup(api, groupNo) {
  return share.make(api, 'group', groupNo)
}

// The landing: `g` when opened inside the mini-program, `scene` from a share.
async function landing(api, query) {
  const { scene, target } = await share.landing(api, query, 'group', 'g')
  return { scene, group: await group(api, target) }
}

module.exports = { activities, activity, open, join, group, opened, shareGroup, landing }
