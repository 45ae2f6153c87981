// Drive the gateway with the real `trino-client` package from npm.
// Usage: node node_client.mjs http://HOST:PORT   (run with NODE_PATH pointing at node_modules)
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.TRINO_EDGE_NODE_MODULES, "noop.js"));
const { Trino, BasicAuth } = require("trino-client");

const server = process.argv[2];
const trino = Trino.create({ server, auth: new BasicAuth("node-user"), source: "node-client" });

const rows = [];
let id = null;
for await (const page of await trino.query("SELECT * FROM UNNEST(sequence(1, 2500))")) {
  if (page.error) throw new Error(JSON.stringify(page.error));
  id = page.id;
  rows.push(...(page.data ?? []));
}
if (rows.length !== 2500 || rows[0][0] !== 1 || rows[2499][0] !== 2500) {
  throw new Error(`expected 2500 rows in order, got ${rows.length}`);
}

let failed = null;
for await (const page of await trino.query("SELECT fail('kaboom from node')")) {
  if (page.error) failed = page.error;
}
if (!failed || !String(failed.message).includes("kaboom from node")) {
  throw new Error(`expected the backend's error, got ${JSON.stringify(failed)}`);
}
console.log(JSON.stringify({ id, rows: rows.length }));
