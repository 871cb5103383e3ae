"""A team-style Node/TypeScript API, written into a folder: what bench/reload.py measures
and tests/e2e/test_loop.py watches (and, at the end, the Python API without a build step
that both use beside it). Standard library only; its image is devenv-test/node
(testbed/images/node: Debian's nodejs 18 and node-typescript 4.8).

The team's backend is a small TypeScript service on Node: package.json, tsconfig.json and
src/ with a server, a router, config, logging, errors, validation and one module per
resource (types, an in-memory repository, handlers). Its Dockerfile does what a team's
production image does: copy the manifest, copy tsconfig and src, run `tsc`, start
`node dist/server.js`. With the default 8 resources it is 18 files and about 1,700 lines of
TypeScript: a service in its first months (a handful of resources with their handlers), not
padded to make a build slow. Debian ships no @types/node, so src/node-env.d.ts declares the
few Node APIs the service uses; a team's tsc that also checks @types/node takes longer, so
the rebuild measured here is, if anything, shorter than the team's.

In the loop the image's command is replaced (DEVENV_API_COMMAND) by the team's dev
command: `tsc --watch` compiles each synced change and `node --watch` restarts the server on
the new output, so Compose only syncs (DEVENV_API_WATCH_ACTION=sync) and never restarts.
"""

from __future__ import annotations

from pathlib import Path

IMAGE = "devenv-test/node:latest"
#: the team's dev command in the container, as `npm run dev` would run it
DEV_COMMAND = "tsc --watch --preserveWatchOutput -p . & exec node --watch dist/server.js"
#: what `tsc --watch` prints once its first compile is done and it watches the files: a
#: file saved before that may be missed by it, so the tests and the bench wait for this
WATCHING = "Watching for file changes."
#: resource modules by default, and their names (8 give ~1,700 lines)
RESOURCES = ("user", "project", "task", "comment", "team", "invite", "webhook", "label",
             "milestone", "attachment", "session", "notification")
DEFAULT_RESOURCES = 8

DOCKERFILE = """FROM {image}
WORKDIR /app
COPY package.json ./
COPY tsconfig.json ./
COPY src ./src
RUN tsc -p .
CMD ["node", "dist/server.js"]
"""

PACKAGE_JSON = """{
  "name": "team-api",
  "version": "1.0.0",
  "private": true,
  "description": "the team's backend, standing in for a real one in devenv's tests",
  "main": "dist/server.js",
  "scripts": {
    "build": "tsc -p .",
    "start": "node dist/server.js",
    "dev": "tsc --watch --preserveWatchOutput -p . & node --watch dist/server.js"
  },
  "devDependencies": {
    "typescript": "^4.8.4"
  }
}
"""

TSCONFIG = """{
  "compilerOptions": {
    "target": "es2020",
    "module": "commonjs",
    "lib": ["es2020"],
    "types": [],
    "rootDir": "src",
    "outDir": "dist",
    "strict": true,
    "noImplicitReturns": true,
    "noFallthroughCasesInSwitch": true,
    "esModuleInterop": true,
    "skipLibCheck": true
  },
  "include": ["src"]
}
"""

NODE_ENV = """// The few Node APIs this service uses (Debian ships no @types/node).
declare const process: {
  env: Record<string, string | undefined>;
  on(event: "SIGTERM" | "SIGINT", listener: () => void): void;
  exit(code?: number): never;
  uptime(): number;
};

declare module "node:http" {
  export interface IncomingMessage {
    method?: string;
    url?: string;
    headers: Record<string, string | string[] | undefined>;
    on(event: "data", listener: (chunk: { toString(): string }) => void): this;
    on(event: "end" | "error", listener: (error?: Error) => void): this;
  }
  export interface ServerResponse {
    statusCode: number;
    setHeader(name: string, value: string | number): this;
    end(body?: string): void;
  }
  export interface Server {
    listen(port: number, host: string, callback?: () => void): this;
    close(callback?: () => void): this;
  }
  export function createServer(
    handler: (request: IncomingMessage, response: ServerResponse) => void,
  ): Server;
}
"""

GREETING = """// The answer of GET /: what the tests and the benchmark edit.
export const GREETING = {value};
"""

CONFIG = """export interface Config {
  port: number;
  host: string;
  databaseUrl: string;
  redisUrl: string;
  poolSize: number;
  logLevel: LogLevel;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

function integer(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") {
    return fallback;
  }
  const value = Number.parseInt(raw, 10);
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${name} must be a whole number, not ${raw}`);
  }
  return value;
}

function level(raw: string | undefined): LogLevel {
  const found = LEVELS.find((l) => l === raw);
  return found ?? "info";
}

export function loadConfig(): Config {
  return {
    port: integer("PORT", 7777),
    host: process.env.HOSTNAME ?? "0.0.0.0",
    databaseUrl: process.env.DATABASE_URL ?? "",
    redisUrl: process.env.REDIS_URL ?? "",
    poolSize: integer("DB_POOL_SIZE", 20),
    logLevel: level(process.env.LOG_LEVEL),
  };
}
"""

LOGGER = """import { LogLevel } from "./config";

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export function createLogger(minimum: LogLevel): Logger {
  const write = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < ORDER[minimum]) {
      return;
    }
    const line = { time: new Date().toISOString(), level, message, ...fields };
    console.log(JSON.stringify(line));
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
  };
}
"""

ERRORS = """export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: readonly string[] = [],
  ) {
    super(message);
  }
}

export class NotFound extends HttpError {
  constructor(what: string, id: string) {
    super(404, `${what} ${id} not found`);
  }
}

export class BadRequest extends HttpError {
  constructor(details: readonly string[]) {
    super(400, "invalid request", details);
  }
}

export class Conflict extends HttpError {
  constructor(message: string) {
    super(409, message);
  }
}

export function toBody(error: unknown): { status: number; body: Record<string, unknown> } {
  if (error instanceof HttpError) {
    return { status: error.status, body: { error: error.message, details: error.details } };
  }
  return { status: 500, body: { error: "internal error" } };
}
"""

VALIDATE = """export type Check<T> = (
  value: unknown,
  path: string,
  problems: string[],
) => T | undefined;

export const str = (min = 1, max = 200): Check<string> => (value, path, problems) => {
  if (typeof value !== "string") {
    problems.push(`${path}: expected a string`);
    return undefined;
  }
  if (value.length < min || value.length > max) {
    problems.push(`${path}: length must be ${min}..${max}`);
    return undefined;
  }
  return value;
};

export const int = (min = 0, max = Number.MAX_SAFE_INTEGER): Check<number> =>
  (value, path, problems) => {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      problems.push(`${path}: expected a whole number`);
      return undefined;
    }
    if (value < min || value > max) {
      problems.push(`${path}: must be ${min}..${max}`);
      return undefined;
    }
    return value;
  };

export const bool: Check<boolean> = (value, path, problems) => {
  if (typeof value !== "boolean") {
    problems.push(`${path}: expected true or false`);
    return undefined;
  }
  return value;
};

export function oneOf<T extends string>(choices: readonly T[]): Check<T> {
  return (value, path, problems) => {
    const found = choices.find((c) => c === value);
    if (found === undefined) {
      problems.push(`${path}: one of ${choices.join(", ")}`);
    }
    return found;
  };
}

export function optional<T>(check: Check<T>): Check<T | undefined> {
  return (value, path, problems) =>
    value === undefined ? undefined : check(value, path, problems);
}

export type Shape<T> = { [K in keyof T]: Check<T[K]> };

export function object<T>(shape: Shape<T>, value: unknown, problems: string[]): T | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push("body: expected a JSON object");
    return undefined;
  }
  const input = value as Record<string, unknown>;
  const out: Partial<T> = {};
  for (const key of Object.keys(shape) as (keyof T)[]) {
    out[key] = shape[key](input[key as string], String(key), problems);
  }
  return problems.length === 0 ? (out as T) : undefined;
}
"""

ROUTER = """import { IncomingMessage } from "node:http";
import { BadRequest } from "./errors";

export interface Request {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}

export interface Reply {
  status: number;
  body: unknown;
}

export type Handler = (request: Request) => Reply | Promise<Reply>;

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
}

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, parts: pattern.split("/").filter(Boolean), handler });
    return this;
  }

  match(
    method: string,
    path: string,
  ): { handler: Handler; params: Record<string, string> } | undefined {
    const parts = path.split("/").filter(Boolean);
    for (const route of this.routes) {
      if (route.method !== method || route.parts.length !== parts.length) {
        continue;
      }
      const params: Record<string, string> = {};
      const matched = route.parts.every((part, i) => {
        if (part.startsWith(":")) {
          params[part.slice(1)] = decodeURIComponent(parts[i]);
          return true;
        }
        return part === parts[i];
      });
      if (matched) {
        return { handler: route.handler, params };
      }
    }
    return undefined;
  }
}

export function readBody(request: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let text = "";
    request.on("data", (chunk) => {
      text += chunk.toString();
    });
    request.on("end", () => {
      if (text === "") {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new BadRequest(["body: not JSON"]));
      }
    });
    request.on("error", (error) => reject(error));
  });
}
"""

PAGINATION = """export interface Page<T> {
  items: T[];
  total: number;
  next: string | null;
}

export function paginate<T>(items: readonly T[], query: URLSearchParams): Page<T> {
  const limit = Math.min(Math.max(Number(query.get("limit") ?? 50) || 50, 1), 500);
  const offset = Math.max(Number(query.get("offset") ?? 0) || 0, 0);
  const slice = items.slice(offset, offset + limit);
  const nextOffset = offset + slice.length;
  return {
    items: slice,
    total: items.length,
    next: nextOffset < items.length ? `offset=${nextOffset}&limit=${limit}` : null,
  };
}
"""

IDS = """let counter = 0;

export function newId(prefix: string): string {
  counter += 1;
  const time = Date.now().toString(36);
  return `${prefix}_${time}${counter.toString(36).padStart(4, "0")}`;
}

export function isId(prefix: string, value: string): boolean {
  return value.startsWith(`${prefix}_`) && value.length > prefix.length + 4;
}
"""

RESOURCE = """import {{ BadRequest, Conflict, NotFound }} from "../errors";
import {{ Router, Request, Reply }} from "../router";
import {{ paginate, Page }} from "../util/pagination";
import {{ newId, isId }} from "../util/ids";
import {{ bool, int, object, oneOf, optional, str, Shape }} from "../validate";

export type {Name}Status = "draft" | "active" | "archived";

export interface {Name} {{
  id: string;
  name: string;
  description: string;
  status: {Name}Status;
  priority: number;
  pinned: boolean;
  createdAt: string;
  updatedAt: string;
  version: number;
}}

export interface New{Name} {{
  name: string;
  description?: string;
  status?: {Name}Status;
  priority?: number;
  pinned?: boolean;
}}

export type {Name}Patch = Partial<New{Name}> & {{ version: number }};

const STATUSES: readonly {Name}Status[] = ["draft", "active", "archived"];

const createShape: Shape<New{Name}> = {{
  name: str(1, 120),
  description: optional(str(0, 2000)),
  status: optional(oneOf(STATUSES)),
  priority: optional(int(0, 5)),
  pinned: optional(bool),
}};

const patchShape: Shape<{Name}Patch> = {{
  name: optional(str(1, 120)),
  description: optional(str(0, 2000)),
  status: optional(oneOf(STATUSES)),
  priority: optional(int(0, 5)),
  pinned: optional(bool),
  version: int(1),
}};

export class {Name}Repository {{
  private readonly rows = new Map<string, {Name}>();

  list(filter: {{ status?: {Name}Status; pinned?: boolean }}): {Name}[] {{
    return [...this.rows.values()]
      .filter((row) => filter.status === undefined || row.status === filter.status)
      .filter((row) => filter.pinned === undefined || row.pinned === filter.pinned)
      .sort((a, b) => b.priority - a.priority || a.createdAt.localeCompare(b.createdAt));
  }}

  get(id: string): {Name} {{
    const row = this.rows.get(id);
    if (row === undefined) {{
      throw new NotFound("{lower}", id);
    }}
    return row;
  }}

  create(input: New{Name}): {Name} {{
    const duplicate = [...this.rows.values()].some((row) => row.name === input.name);
    if (duplicate) {{
      throw new Conflict(`a {lower} named ${{input.name}} exists`);
    }}
    const now = new Date().toISOString();
    const row: {Name} = {{
      id: newId("{prefix}"),
      name: input.name,
      description: input.description ?? "",
      status: input.status ?? "draft",
      priority: input.priority ?? 0,
      pinned: input.pinned ?? false,
      createdAt: now,
      updatedAt: now,
      version: 1,
    }};
    this.rows.set(row.id, row);
    return row;
  }}

  update(id: string, patch: {Name}Patch): {Name} {{
    const current = this.get(id);
    if (current.version !== patch.version) {{
      throw new Conflict(`{lower} ${{id}} changed meanwhile (version ${{current.version}})`);
    }}
    const next: {Name} = {{
      ...current,
      name: patch.name ?? current.name,
      description: patch.description ?? current.description,
      status: patch.status ?? current.status,
      priority: patch.priority ?? current.priority,
      pinned: patch.pinned ?? current.pinned,
      updatedAt: new Date().toISOString(),
      version: current.version + 1,
    }};
    this.rows.set(id, next);
    return next;
  }}

  remove(id: string): void {{
    this.get(id);
    this.rows.delete(id);
  }}
}}

function parseFilter(query: URLSearchParams): {{ status?: {Name}Status; pinned?: boolean }} {{
  const status = STATUSES.find((s) => s === query.get("status"));
  const pinned = query.get("pinned");
  return {{ status, pinned: pinned === null ? undefined : pinned === "true" }};
}}

function checkId(id: string): string {{
  if (!isId("{prefix}", id)) {{
    throw new BadRequest([`id: not a {lower} id: ${{id}}`]);
  }}
  return id;
}}

export function {lower}Routes(router: Router, repository = new {Name}Repository()): Router {{
  const list = (request: Request): Reply => {{
    const page: Page<{Name}> = paginate(repository.list(parseFilter(request.query)), request.query);
    return {{ status: 200, body: page }};
  }};
  const create = (request: Request): Reply => {{
    const problems: string[] = [];
    const input = object(createShape, request.body, problems);
    if (input === undefined) {{
      throw new BadRequest(problems);
    }}
    return {{ status: 201, body: repository.create(input) }};
  }};
  const read = (request: Request): Reply => ({{
    status: 200,
    body: repository.get(checkId(request.params.id)),
  }});
  const update = (request: Request): Reply => {{
    const problems: string[] = [];
    const patch = object(patchShape, request.body, problems);
    if (patch === undefined) {{
      throw new BadRequest(problems);
    }}
    return {{ status: 200, body: repository.update(checkId(request.params.id), patch) }};
  }};
  const remove = (request: Request): Reply => {{
    repository.remove(checkId(request.params.id));
    return {{ status: 204, body: null }};
  }};
  return router
    .add("GET", "/{plural}", list)
    .add("POST", "/{plural}", create)
    .add("GET", "/{plural}/:id", read)
    .add("PATCH", "/{plural}/:id", update)
    .add("DELETE", "/{plural}/:id", remove);
}}
"""

SERVER = """import {{ createServer }} from "node:http";
import {{ loadConfig }} from "./config";
import {{ toBody }} from "./errors";
import {{ GREETING }} from "./greeting";
import {{ createLogger }} from "./logger";
import {{ Router, readBody }} from "./router";
{imports}

const config = loadConfig();
const log = createLogger(config.logLevel);
const router = new Router()
  .add("GET", "/health", () => ({{
    status: 200,
    body: {{ status: "ok", uptime: process.uptime() }},
  }}))
  .add("GET", "/", () => ({{ status: 200, body: {{ greeting: GREETING, service: "team-api" }} }}));
{routes}

const server = createServer((request, response) => {{
  const url = new URL(request.url ?? "/", "http://localhost");
  const method = request.method ?? "GET";
  const send = (status: number, body: unknown) => {{
    const text = body === null ? "" : JSON.stringify(body);
    response.statusCode = status;
    response.setHeader("Content-Type", "application/json");
    response.setHeader("Content-Length", Buffer.byteLength(text));
    response.end(text);
  }};
  const found = router.match(method, url.pathname);
  if (found === undefined) {{
    send(404, {{ error: `no route for ${{method}} ${{url.pathname}}` }});
    return;
  }}
  readBody(request)
    .then((body) =>
      found.handler({{
        method,
        path: url.pathname,
        params: found.params,
        query: url.searchParams,
        body,
      }}),
    )
    .then((reply) => send(reply.status, reply.body))
    .catch((error: unknown) => {{
      const {{ status, body }} = toBody(error);
      if (status >= 500) {{
        log.error("request failed", {{ method, path: url.pathname, error: String(error) }});
      }}
      send(status, body);
    }});
}});

server.listen(config.port, config.host, () => {{
  log.info("listening", {{ port: config.port, pool: config.poolSize }});
}});

for (const signal of ["SIGTERM", "SIGINT"] as const) {{
  process.on(signal, () => server.close(() => process.exit(0)));
}}
"""

GLOBALS = """// Node's globals the service uses.
declare const Buffer: { byteLength(text: string): number };
declare const console: { log(...values: unknown[]): void };
declare class URLSearchParams {
  get(name: string): string | null;
}
declare class URL {
  constructor(url: string, base?: string);
  readonly pathname: string;
  readonly searchParams: URLSearchParams;
}
"""


def greeting_source(value: str) -> str:
    import json

    return GREETING.format(value=json.dumps(value))


def write_team_api(folder: Path, greeting: str = "start",
                   resources: int = DEFAULT_RESOURCES, image: str = IMAGE) -> Path:
    """Write the API into `folder` (created); returns the file a change is saved to."""
    # past the named ones, numbered copies: only for measuring how the build grows
    names = (RESOURCES + tuple(f"extra{n}" for n in range(max(0, resources - len(RESOURCES))))
             )[:max(1, resources)]
    src = folder / "src"
    for path in (src / "resources", src / "util"):
        path.mkdir(parents=True, exist_ok=True)
    files = {
        folder / "Dockerfile": DOCKERFILE.format(image=image),
        folder / "package.json": PACKAGE_JSON,
        folder / "tsconfig.json": TSCONFIG,
        folder / ".dockerignore": "node_modules\ndist\n",
        src / "node-env.d.ts": NODE_ENV + GLOBALS,
        src / "greeting.ts": greeting_source(greeting),
        src / "config.ts": CONFIG,
        src / "logger.ts": LOGGER,
        src / "errors.ts": ERRORS,
        src / "validate.ts": VALIDATE,
        src / "router.ts": ROUTER,
        src / "util" / "pagination.ts": PAGINATION,
        src / "util" / "ids.ts": IDS,
    }
    for lower in names:
        name = lower.capitalize()
        files[src / "resources" / f"{lower}.ts"] = RESOURCE.format(
            Name=name, lower=lower, plural=lower + "s", prefix=lower[:3])
    files[src / "server.ts"] = SERVER.format(
        imports="\n".join(f'import {{ {n}Routes }} from "./resources/{n}";' for n in names),
        routes="\n".join(f"{n}Routes(router);" for n in names))
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return src / "greeting.ts"


def source_size(folder: Path) -> tuple[int, int]:
    """(files, lines) of TypeScript under src/."""
    sources = sorted((folder / "src").rglob("*.ts"))
    return len(sources), sum(len(p.read_text().splitlines()) for p in sources)


# --- the Python API without a build step ------------------------------------------------
PYTHON_DOCKERFILE = """FROM {base}
WORKDIR /app
COPY . /app
{build_step}CMD ["python3", "/app/server.py"]
"""
PYTHON_SERVER = '''import http.server, json, os
from greeting import GREETING

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"greeting": GREETING, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def python_greeting_source(value: str) -> str:
    """greeting.py of the Python API: the file the tests and the benchmark edit."""
    return f"GREETING = {value!r}\n"


def write_python_api(folder: Path, base: str, greeting: str = "start",
                     build_step: str = "") -> Path:
    """The Python API (`COPY . /app`, optionally a RUN after it) on image `base` in
    `folder`; returns the file to edit (greeting.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(PYTHON_DOCKERFILE.format(
        base=base, build_step=f"RUN {build_step}\n" if build_step else ""))
    (folder / "server.py").write_text(PYTHON_SERVER)
    edited = folder / "greeting.py"
    edited.write_text(python_greeting_source(greeting))
    return edited
