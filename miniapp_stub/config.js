// Where the mini-program finds the API. In WeChat DevTools point it at a local
// `haodian serve` (tick "Do not verify valid domain names" in the project's settings);
// a release build points at the HTTPS domain configured in the mini-program's admin.
module.exports = {
  baseUrl: 'http://127.0.0.1:8000',
  appid: 'wxdemo0000000001',
}
