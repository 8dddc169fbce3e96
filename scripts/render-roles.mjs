// Rewrites nats.conf's and nats-cluster/roles.conf's roles block and docs/security.md's permission table from
// src/platform/nats-roles.ts (after `npm run build`). test/nats-roles.test.ts checks both.
import { readFileSync, writeFileSync } from "node:fs";
import { renderAuthorization, renderRoleTable } from "../dist/platform/nats-roles.js";

const conf = readFileSync("nats.conf", "utf8");
writeFileSync("nats.conf", conf.replace(/# BEGIN roles[\s\S]*# END roles/, renderAuthorization()));
const roles = readFileSync("nats-cluster/roles.conf", "utf8");
writeFileSync("nats-cluster/roles.conf", roles.replace(/# BEGIN roles[\s\S]*# END roles/, renderAuthorization()));
const docs = readFileSync("docs/security.md", "utf8");
writeFileSync("docs/security.md", docs.replace(/\| user \(password variable\)[^\n]*\n\| ---[^\n]*\n(\|[^\n]*\n)*/, renderRoleTable() + "\n"));
