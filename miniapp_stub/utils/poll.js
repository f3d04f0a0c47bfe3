// Ask again until the answer is the one wanted: what the API finishes a moment after it
// answered (an order the worker writes from a stream, a group a payment notification opens).
'use strict'

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// `ask()` until `ready(answer)`; after `tries` the last answer is returned as it is. An error
// for which `retry(err)` is true counts as not ready yet.
async function until(ask, ready, { tries = 100, waitMs = 100, retry = () => false } = {}) {
  for (let i = 0; ; i++) {
    try {
      const answer = await ask()
      if (ready(answer) || i >= tries) return answer
    } catch (err) {
      if (!retry(err) || i >= tries) throw err
    }
    await sleep(waitMs)
  }
}

module.exports = { until, sleep }
