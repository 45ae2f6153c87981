// Run one SQL statement with the real `trino-client` package from npm and print its rows as JSON.
// Usage: node node_sql.mjs http://HOST:PORT SQL   (TRINO_EDGE_NODE_MODULES pointing at node_modules)
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.TRINO_EDGE_NODE_MODULES, "noop.js"));
const { Trino, BasicAuth } = require("trino-client");

const [server, sql] = process.argv.slice(2);
const trino = Trino.create({ server, auth: new BasicAuth("node-user"), source: "node-sql" });
const rows = [];
for await (const page of await trino.query(sql)) {
  if (page.error) throw new Error(JSON.stringify(page.error));
  rows.push(...(page.data ?? []));
}
console.log(JSON.stringify({ rows }));
