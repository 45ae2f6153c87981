// One statement through a gateway that holds it in its queue (tests/queue.rs), with the real
// `trino-client` package from npm: prints its rows and, page by page, the id and state it saw.
// Usage: node node_queue.mjs http://HOST:PORT SQL   (TRINO_EDGE_NODE_MODULES pointing at node_modules)
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.TRINO_EDGE_NODE_MODULES, "noop.js"));
const { Trino, BasicAuth } = require("trino-client");

const [server, sql] = process.argv.slice(2);
const trino = Trino.create({ server, auth: new BasicAuth("node-queue"), source: "queue-test" });
const rows = [];
const pages = [];
for await (const page of await trino.query(sql)) {
  if (page.error) throw new Error(JSON.stringify(page.error));
  pages.push({ id: page.id, state: page.stats?.state });
  rows.push(...(page.data ?? []));
}
console.log(JSON.stringify({ rows, pages }));
