#!/usr/bin/env node
// Validates an OpenAPI document (kailashd's GET /openapi.json) with @apidevtools/swagger-parser:
// the OpenAPI 3.1 schema, then swagger-parser's own checks (path parameters declared, operationIds
// unique, $refs resolvable). Usage: node validate.js FILE, or node validate.js - (stdin).
// Exit 0 and "valid" on stdout; exit 1 with the errors on stderr; exit 2 for a usage error.
"use strict";
const fs = require("fs");
const SwaggerParser = require("@apidevtools/swagger-parser");

async function main(argv) {
  if (argv.length !== 1) {
    process.stderr.write("usage: node validate.js FILE|-\n");
    return 2;
  }
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(argv[0] === "-" ? 0 : argv[0], "utf8"));
  } catch (e) {
    process.stderr.write("not JSON: " + e.message + "\n");
    return 1;
  }
  try {
    // resolve.external off: the document must stand alone; nothing is fetched.
    await SwaggerParser.validate(doc, { resolve: { external: false } });
  } catch (e) {
    process.stderr.write(String(e && e.message ? e.message : e) + "\n");
    if (e && Array.isArray(e.details)) process.stderr.write(JSON.stringify(e.details, null, 2) + "\n");
    return 1;
  }
  process.stdout.write("valid\n");
  return 0;
}

main(process.argv.slice(2)).then((rc) => process.exit(rc));
