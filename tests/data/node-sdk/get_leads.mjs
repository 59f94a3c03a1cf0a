// Zoho's official Node SDK (@zohocrm/nodejs-sdk-8.0) calling the proxy with a client key as its
// "access token". Run by tests/requester.rs when the SDK is installed (see .ci/run):
//   ZOHO_SDK=/path/node_modules/@zohocrm/nodejs-sdk-8.0 PROXY_URL=http://127.0.0.1:PORT \
//   CLIENT_KEY=... RESOURCES=/tmp/dir node get_leads.mjs
// Prints one JSON line: {"status": <HTTP status>, "records": <count>} or {"error": "..."}.
const sdk = await import(process.env.ZOHO_SDK + "/lib/index.js");

const environment = sdk.DataCenter.setEnvironment(
  process.env.PROXY_URL,
  "https://accounts.zoho.com/oauth/v2/token",
  process.env.PROXY_URL,
);
const token = new sdk.OAuthBuilder().accessToken(process.env.CLIENT_KEY).build();
const logger = new sdk.LogBuilder()
  .level(sdk.Levels.OFF)
  .filePath(process.env.RESOURCES + "/sdk.log")
  .build();
try {
  await (await new sdk.InitializeBuilder())
    .environment(environment)
    .token(token)
    .logger(logger)
    .resourcePath(process.env.RESOURCES)
    .initialize();
  const operations = new sdk.Record.RecordOperations("Leads");
  const params = new sdk.ParameterMap();
  await params.add(sdk.Record.GetRecordsParam.FIELDS, "Last_Name,Email");
  const response = await operations.getRecords(params, new sdk.HeaderMap());
  let records = 0;
  const object = response.getObject();
  if (object instanceof sdk.Record.ResponseWrapper) {
    records = object.getData().length;
  }
  console.log(JSON.stringify({ status: response.getStatusCode(), records }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e && (e.message || e.code || e)) + " " + JSON.stringify(e) }));
}
