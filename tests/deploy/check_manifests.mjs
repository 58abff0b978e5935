// check_manifests.mjs: the offline checks of fanout's Kubernetes manifests (issue 13, point 3), on
// rendered YAML (`kubectl kustomize` output). Three passes, every problem reported, exit 1 if any:
//
//   schema  each object validates against its Kubernetes or KEDA schema (kubernetes-models), which
//           catches wrong types and missing required fields; an unknown kind is a problem too;
//   strict  each object as a TypeScript literal of its kubernetes-models type, compiled by tsc:
//           excess-property checking rejects any field the API does not have (a misspelled
//           `livenessProbe` would otherwise be dropped silently by the API server);
//   policy  what fanout's deployment promises (see `policy` below), including that the arguments
//           of every fanout container are accepted by the real binary's --help.
//
//   node check_manifests.mjs --tools DIR --program fanout-broker=PATH --program fanout-worker=PATH
//        [--pending fanout-broker=--key,--clients ...] FILE.yaml...
//
// --tools is where scripts/install-deploy-tools.sh installed the Node packages. --pending names
// flags a binary will have but this build's --help does not list yet (accepted with a note).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const options = { tools: null, programs: new Map(), pending: new Map(), files: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i];
  const value = () => {
    if (i + 1 >= argv.length) usage(`${arg} needs a value`);
    return argv[++i];
  };
  if (arg === "--tools") options.tools = path.resolve(value());
  else if (arg === "--program" || arg === "--pending") {
    const [name, rest] = value().split(/=(.*)/s);
    if (!rest) usage(`${arg} takes NAME=VALUE`);
    if (arg === "--program") options.programs.set(name, rest);
    else options.pending.set(name, new Set(rest.split(",")));
  } else if (arg.startsWith("-")) usage(`unknown option ${arg}`);
  else options.files.push(arg);
}
if (!options.tools || options.files.length === 0) usage("--tools and at least one file are required");

function usage(message) {
  console.error(`check_manifests: ${message}\n` +
    "usage: node check_manifests.mjs --tools DIR [--program NAME=PATH]... [--pending NAME=FLAG,...]... FILE.yaml...");
  process.exit(2);
}

const require = createRequire(path.join(options.tools, "package.json"));
const yaml = require("js-yaml");

const problems = [];
const problem = (where, text) => problems.push(`${where}: ${text}`);
const notes = new Set();

// ---- reading ----
const objects = [];  // { file, object, where }
for (const file of options.files) {
  let documents;
  try {
    documents = yaml.loadAll(readFileSync(file, "utf8"));
  } catch (error) {
    problem(file, `not readable YAML: ${error.message}`);
    continue;
  }
  for (const object of documents) {
    if (object === null || object === undefined) continue;
    const name = object?.metadata?.name ?? "(no name)";
    objects.push({ file, object, where: `${path.basename(file)}: ${object.kind}/${name}` });
  }
}

// ---- schema ----
// apiVersion to the package module that holds its kinds.
function schemaModule(apiVersion) {
  if (apiVersion === "keda.sh/v1alpha1") return "@kubernetes-models/keda/keda.sh/v1alpha1";
  return `kubernetes-models/${apiVersion}`;
}

function modelOf({ object, where }) {
  if (typeof object.apiVersion !== "string" || typeof object.kind !== "string") {
    problem(where, "has no apiVersion and kind");
    return null;
  }
  let module;
  try {
    module = require(schemaModule(object.apiVersion));
  } catch {
    problem(where, `unknown apiVersion ${object.apiVersion}`);
    return null;
  }
  const model = module[object.kind];
  if (typeof model !== "function") {
    problem(where, `unknown kind ${object.kind} in ${object.apiVersion}`);
    return null;
  }
  return model;
}

const typed = [];  // objects whose kind is known, for the strict pass
for (const entry of objects) {
  const Model = modelOf(entry);
  if (!Model) continue;
  typed.push(entry);
  try {
    new Model(entry.object).validate();
  } catch (error) {
    const details = (error.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ");
    problem(entry.where, `schema: ${details || error.message}`);
  }
}

// ---- strict: unknown fields ----
function typeModule(apiVersion, kind) {
  return `${schemaModule(apiVersion)}/${kind}`;
}

if (typed.length > 0) {
  const scratch = mkdtempSync(path.join(options.tools, "strict-"));
  try {
    const lines = [];
    const owners = [];  // line number (1-based) of each object's first line
    const imports = new Map();
    for (const { object } of typed) {
      const type = `I${object.kind}`;
      const alias = `${type}_${object.apiVersion.replace(/[^A-Za-z0-9]/g, "_")}`;
      imports.set(alias, `import type { ${type} as ${alias} } from "${typeModule(object.apiVersion, object.kind)}";`);
    }
    lines.push(...imports.values());
    typed.forEach(({ object }, index) => {
      const alias = `I${object.kind}_${object.apiVersion.replace(/[^A-Za-z0-9]/g, "_")}`;
      owners.push(lines.length + 1);
      lines.push(...`const object${index}: ${alias} = ${JSON.stringify(object, null, 1)};`.split("\n"));
    });
    const source = path.join(scratch, "objects.ts");
    writeFileSync(source, lines.join("\n") + "\n");
    const tsc = spawnSync(path.join(options.tools, "node_modules", ".bin", "tsc"),
      ["--noEmit", "--strict", "--skipLibCheck", "--types", "", source], { encoding: "utf8" });
    if (tsc.error) throw tsc.error;
    for (const line of `${tsc.stdout}${tsc.stderr}`.split("\n")) {
      const match = line.match(/objects\.ts\((\d+),\d+\): error TS\d+: (.*)/);
      if (!match) {
        if (line.trim() && tsc.status !== 0) problem("strict", line.trim());
        continue;
      }
      const at = Number(match[1]);
      let owner = -1;
      owners.forEach((first, index) => { if (first <= at) owner = index; });
      const where = owner >= 0 ? typed[owner].where : "strict";
      problem(where, `strict: ${match[2].replace(/Object literal may only specify known properties, and '"?([^'"]+)"?' does not exist in type '([^']{0,60})[^']*'/, "unknown field $1 (in $2)")}`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

// ---- policy ----
// What each program's --help accepts: option name -> takes a value.
const helpCache = new Map();
function optionsOf(program) {
  if (helpCache.has(program)) return helpCache.get(program);
  const binary = options.programs.get(program);
  if (!binary) return null;
  const help = execFileSync(binary, ["--help"], { encoding: "utf8" });
  const accepted = new Map();
  const section = help.split(/^Options:$/m)[1]?.split(/^\S/m)[0] ?? "";
  // CLI11 lists options as `  -c,--connect TEXT ...` or `  --allow-shell   Accept ...`: the names,
  // then a TYPE in capitals (or a choice / default in brackets) when the option takes a value.
  for (const line of section.split("\n")) {
    const match = line.match(/^\s+((?:-{1,2}[A-Za-z][\w-]*,?)+)(?:\s+(\S+))?/);
    if (!match) continue;
    const takesValue = match[2] !== undefined && /^([A-Z][A-Z_:]*|\[.*|\{.*|<.*)$/.test(match[2]);
    for (const name of match[1].split(",").filter(Boolean)) accepted.set(name, takesValue);
  }
  if (accepted.size === 0) throw new Error(`no options found in ${binary} --help`);
  helpCache.set(program, accepted);
  return accepted;
}

function checkArguments(where, program, args) {
  const accepted = optionsOf(program);
  if (!accepted) {
    problem(where, `policy: ${program} is not a program this check knows (--program ${program}=PATH)`);
    return;
  }
  const pending = options.pending.get(program) ?? new Set();
  for (let i = 0; i < args.length; i++) {
    const arg = String(args[i]);
    if (!arg.startsWith("-")) {
      problem(where, `policy: ${program} takes no argument ${JSON.stringify(arg)} (not an option's value)`);
      continue;
    }
    const [name, inline] = arg.split(/=(.*)/s);
    let takesValue = accepted.get(name);
    if (takesValue === undefined && pending.has(name)) {
      notes.add(`${program} ${name}: accepted as pending, its --help does not list it yet`);
      takesValue = true;
    } else if (takesValue !== undefined && pending.has(name)) {
      notes.add(`${program} ${name}: listed by --help now; remove it from the pending flags`);
    }
    if (takesValue === undefined) {
      problem(where, `policy: ${program} --help has no option ${name}`);
      continue;
    }
    if (takesValue && inline === undefined) {
      if (i + 1 >= args.length) problem(where, `policy: ${program} ${name} needs a value`);
      i++;
    } else if (!takesValue && inline !== undefined) {
      problem(where, `policy: ${program} ${name} is a flag and takes no value`);
    }
  }
}

const workloadKinds = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"]);
function podSpecOf(object) {
  if (object.kind === "Pod") return object.spec;
  if (object.kind === "CronJob") return object.spec?.jobTemplate?.spec?.template?.spec;
  return object.spec?.template?.spec;
}

// The program a container runs and its arguments: the image's entrypoint is tini, so without a
// `command` the program is args[0].
function programOf(container) {
  const line = [...(container.command ?? []), ...(container.args ?? [])].map(String);
  if (line[0] === "/usr/bin/tini" || line[0] === "tini") line.splice(0, line[1] === "--" ? 2 : 1);
  return { program: path.basename(line[0] ?? ""), args: line.slice(1) };
}

function optionValue(args, name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

const fanoutPrograms = new Set(["fanout-broker", "fanout-worker", "fanout"]);
const kWorkerDefaultDrainSeconds = 30;  // fanout-worker --drain-timeout's default
const kOwnerReadOnly = 0o400;

for (const { object, where } of objects) {
  if (!workloadKinds.has(object.kind)) continue;
  const pod = podSpecOf(object);
  if (!pod) {
    problem(where, "policy: no pod template");
    continue;
  }
  const podSecurity = pod.securityContext ?? {};
  const containers = pod.containers ?? [];
  const all = [...(pod.initContainers ?? []), ...containers];

  for (const container of all) {
    const at = `${where} container ${container.name}`;
    const isInit = !containers.includes(container);
    const security = container.securityContext ?? {};
    const runAsNonRoot = security.runAsNonRoot ?? podSecurity.runAsNonRoot;
    const runAsUser = security.runAsUser ?? podSecurity.runAsUser;
    if (runAsNonRoot !== true) problem(at, "policy: runAsNonRoot is not true");
    if (runAsUser === 0) problem(at, "policy: runs as user 0");
    if (security.allowPrivilegeEscalation !== false) problem(at, "policy: allowPrivilegeEscalation is not false");
    if (security.readOnlyRootFilesystem !== true) problem(at, "policy: the root filesystem is not read-only");
    if (!(security.capabilities?.drop ?? []).includes("ALL")) problem(at, "policy: capabilities are not dropped (drop: [ALL])");
    if ((security.capabilities?.add ?? []).length > 0) problem(at, "policy: adds capabilities");
    if (security.privileged === true) problem(at, "policy: privileged");
    for (const kind of ["requests", "limits"]) {
      for (const resource of ["cpu", "memory"]) {
        if (container.resources?.[kind]?.[resource] === undefined) problem(at, `policy: no ${resource} ${kind}`);
      }
    }
    if (!isInit) {
      if (!container.livenessProbe) problem(at, "policy: no livenessProbe");
      if (!container.readinessProbe) problem(at, "policy: no readinessProbe");
    }

    const { program, args } = programOf(container);
    if (!fanoutPrograms.has(program)) continue;
    if (isInit) problem(at, `policy: ${program} as an init container`);
    checkArguments(at, program, args);
    if (program === "fanout-broker") {
      if (!container.startupProbe) problem(at, "policy: the broker has no startupProbe (journal replay)");
      if (object.kind !== "StatefulSet") {
        problem(at, `policy: the broker runs in a ${object.kind}; it must be a StatefulSet of one replica ` +
                    "(a rolling Deployment would run two brokers on one journal)");
      } else if ((object.spec.replicas ?? 1) > 1) {
        problem(at, `policy: ${object.spec.replicas} broker replicas; there is one broker`);
      }
    }
    if (program === "fanout-worker") {
      const fromEnv = (container.env ?? []).find((variable) => variable.name === "FANOUT_DRAIN_TIMEOUT")?.value;
      const drain = Number(optionValue(args, "--drain-timeout") ?? fromEnv ?? kWorkerDefaultDrainSeconds);
      const grace = pod.terminationGracePeriodSeconds ?? 30;
      if (!(grace > drain)) {
        problem(at, `policy: terminationGracePeriodSeconds ${grace} does not exceed the worker's --drain-timeout ${drain}`);
      }
    }
  }

  for (const volume of pod.volumes ?? []) {
    if (!volume.secret) continue;
    const at = `${where} volume ${volume.name}`;
    const mode = volume.secret.defaultMode;
    if (mode !== kOwnerReadOnly) {
      problem(at, `policy: Secret volume mode ${mode === undefined ? "unset (0644)" : "0" + mode.toString(8)}, not 0400`);
    }
    for (const item of volume.secret.items ?? []) {
      if (item.mode !== undefined && item.mode !== kOwnerReadOnly) {
        problem(at, `policy: Secret item ${item.key} mode 0${item.mode.toString(8)}, not 0400`);
      }
    }
  }
}

for (const note of notes) console.log(`note: ${note}`);
for (const line of problems) console.log(line);
const files = options.files.map((file) => path.basename(file)).join(", ");
if (problems.length > 0) {
  console.log(`check_manifests: ${problems.length} problem(s) in ${files}`);
  process.exit(1);
}
console.log(`check_manifests: ${objects.length} objects in ${files}: schema, strict and policy checks pass`);
