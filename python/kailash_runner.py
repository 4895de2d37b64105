"""kailash_runner: one Python worker of kailashd's pool (src/python/, DESIGN.md "Waiting inside the
loop"). kailashd starts it with an empty environment, in a private working directory, under
RLIMIT_AS/RLIMIT_CPU/RLIMIT_NOFILE, no new privileges and a seccomp filter that refuses sockets other
than AF_UNIX; it talks to kailashd over fd 3 (one end of a socketpair) in frames: a 4-byte big-endian
length, then compact JSON.

    worker -> daemon  {"ready": true, "pid": N}                    once, at start
    daemon -> worker  {"id": I, "code_id": C, "code": "...",       "code" only the first time this
                       "inputs": {...}, "timeout": S, "async": b}   worker sees C
    worker -> daemon  {"id": I, "ok": true, "outputs": {...}}
                      {"id": I, "ok": false, "kind": K, "error": "..."}
                      {"id": I, "unknown_code": true}               (C was forgotten: send it again)

One call at a time: the daemon sends the next call only after the answer, so nothing of another run
waits in the socket while a call's code runs.

Semantics are the Kailash SDK's PythonCodeNode (kailash.nodes.code.python, common.py): the code is
checked by the SDK's SafeCodeChecker rules, runs with the SDK's allowed builtins and with every
allowed module already bound by name, the node's inputs as local variables; the outputs are
{"result": result} when the code set `result`, else every local variable not starting with "_" that
is not a module. AsyncPythonCodeNode's code may use top-level await (run on an asyncio loop) and takes
the SDK's async module list."""
import ast
import asyncio
import builtins
import importlib
import json
import os
import resource
import struct
import sys
import traceback
import types

FD = 3
MAX_FRAME = 64 << 20
MAX_CODES = 1024  # compiled code objects kept; past this the cache starts over

# kailash.nodes.code.common (the SDK's lists, verbatim)
COMMON_ALLOWED_MODULES = {
    "math", "statistics", "datetime", "json", "random", "itertools", "collections", "functools",
    "string", "time", "re", "enum", "dataclasses", "typing", "types", "copy", "uuid", "hashlib",
    "hmac", "secrets", "base64", "pandas", "numpy", "scipy", "sklearn", "pathlib", "os", "csv",
    "mimetypes", "glob", "xml", "tempfile", "logging", "io", "pickle", "msgpack", "yaml", "toml",
    "cachetools", "tenacity", "ratelimit", "structlog", "prometheus_client",
}
SYNC_SPECIFIC_MODULES = {"matplotlib", "seaborn", "plotly", "array"}
ASYNC_SPECIFIC_MODULES = {
    "asyncio", "contextvars", "concurrent.futures", "aiohttp", "httpx", "websockets", "asyncpg",
    "aiomysql", "motor", "redis", "redis.asyncio", "aiosqlite", "aiofiles", "aiokafka", "aio_pika",
    "aioboto3", "aioazure", "orjson",
}
ALLOWED_MODULES = COMMON_ALLOWED_MODULES | SYNC_SPECIFIC_MODULES
ALLOWED_ASYNC_MODULES = COMMON_ALLOWED_MODULES | ASYNC_SPECIFIC_MODULES
COMMON_ALLOWED_BUILTINS = {
    "bool", "int", "float", "str", "list", "dict", "set", "tuple", "frozenset", "bytes", "bytearray",
    "complex", "len", "range", "enumerate", "zip", "map", "filter", "reversed", "iter", "next",
    "sorted", "sum", "min", "max", "all", "any", "abs", "round", "divmod", "pow", "hex", "oct", "bin",
    "format", "ord", "chr", "repr", "isinstance", "hasattr", "getattr", "type", "callable", "hash",
    "vars", "print", "__import__", "Exception", "ValueError", "TypeError", "KeyError", "NameError",
    "AttributeError", "IndexError", "RuntimeError", "StopIteration", "ImportError", "OSError",
    "IOError", "FileNotFoundError", "ZeroDivisionError", "ArithmeticError", "AssertionError",
    "ConnectionError",
}
ALLOWED_BUILTINS = COMMON_ALLOWED_BUILTINS | {"open"}
ALLOWED_ASYNC_BUILTINS = COMMON_ALLOWED_BUILTINS | {"locals", "globals", "setattr"}
# Modules imported at start (cheap, stdlib); the others (numpy, pandas, ...) on first use.
EAGER = {"math", "statistics", "datetime", "json", "random", "itertools", "collections", "functools",
         "string", "time", "re", "enum", "dataclasses", "typing", "types", "copy", "uuid", "hashlib",
         "hmac", "secrets", "base64", "pathlib", "os", "csv", "mimetypes", "glob", "xml", "tempfile",
         "logging", "io", "pickle", "array", "asyncio", "contextvars"}
# Functions of `os` the SDK's checker names dangerous, and the rest of the process-starting family:
# the `os` user code sees lacks them.
OS_HIDDEN = {"system", "popen", "fork", "forkpty", "vfork", "posix_spawn", "posix_spawnp", "kill",
             "killpg", "register_at_fork"}
OS_HIDDEN_PREFIXES = ("exec", "spawn")


class Refused(Exception):
    """The code broke the import policy or the SDK's safety rules."""


def safety_violations(tree, allowed):
    """The SDK's SafeCodeChecker, same rules and messages."""
    found = []
    dangerous_from = {"os": {"system", "popen", "execv", "execl", "spawn"},
                      "subprocess": {"run", "call", "check_call", "Popen"},
                      "__builtin__": {"eval", "exec", "compile", "__import__"},
                      "builtins": {"eval", "exec", "compile", "__import__"}}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                mod = alias.name.split(".")[0]
                if mod not in allowed:
                    found.append((node.lineno, "Import of module '%s' is not allowed" % mod))
        elif isinstance(node, ast.ImportFrom) and node.module:
            mod = node.module.split(".")[0]
            if mod not in allowed:
                found.append((node.lineno, "Import from module '%s' is not allowed" % mod))
            for alias in node.names if mod in dangerous_from else ():
                if alias.name in dangerous_from[mod]:
                    found.append((node.lineno, "Import of dangerous function '%s' from module '%s' is not "
                                  "allowed" % (alias.name, mod)))
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in {"eval", "exec", "compile", "system", "popen", "__import__"}:
                found.append((node.lineno, "Call to '%s' is not allowed" % f.id))
            elif isinstance(f, ast.Attribute) and f.attr in {"system", "popen"}:
                found.append((node.lineno, "Call to method '%s' is not allowed" % f.attr))
    found.sort()
    return ["Line %d: %s" % v for v in found]


def restricted_os():
    m = types.ModuleType("os")
    for k, v in vars(os).items():
        if k not in OS_HIDDEN and not k.startswith(OS_HIDDEN_PREFIXES):
            setattr(m, k, v)
    return m


class Builtins(dict):
    """The allowed builtins; a name not found here that is an allowed module not imported at start
    (numpy, pandas, ...) is imported on first use, as the SDK binds every allowed module by name."""

    def __init__(self, names, allowed):
        super().__init__((n, getattr(builtins, n)) for n in names if hasattr(builtins, n))
        self.allowed = allowed
        self["__import__"] = self.guarded_import

    def __missing__(self, name):
        if name in self.allowed and "." not in name:
            try:
                mod = importlib.import_module(name)
            except ImportError:
                raise KeyError(name)
            return restricted_os() if name == "os" else mod
        raise KeyError(name)

    def guarded_import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name.split(".")[0] not in self.allowed:
            raise ImportError("Import of module '%s' is not allowed in PythonCodeNode" % name)
        mod = builtins.__import__(name, globals, locals, fromlist, level)
        if mod is os:
            return OS_PROXY
        return mod


def no_context(*_a, **_k):
    raise RuntimeError("get_workflow_context()/set_workflow_context() are not available in kailashd")


def base_globals(asynchronous):
    allowed = ALLOWED_ASYNC_MODULES if asynchronous else ALLOWED_MODULES
    names = ALLOWED_ASYNC_BUILTINS if asynchronous else ALLOWED_BUILTINS
    g = {"__builtins__": Builtins(names, allowed), "__name__": "__kailash__"}
    for name in sorted(EAGER & allowed):
        try:
            g[name] = OS_PROXY if name == "os" else importlib.import_module(name)
        except ImportError:
            pass
    g["get_workflow_context"] = g["set_workflow_context"] = no_context
    return g


OS_PROXY = restricted_os()
GLOBALS = {}
CODES = {}


def compile_code(code, asynchronous):
    allowed = ALLOWED_ASYNC_MODULES if asynchronous else ALLOWED_MODULES
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise Refused("Invalid Python syntax at line %s: %s" % (e.lineno, e.msg))
    bad = safety_violations(tree, allowed)
    if bad:
        raise Refused("Code safety violations found:\n" + "\n".join(bad))
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if asynchronous else 0
    return compile(tree, "<PythonCodeNode>", "exec", flags=flags)


def outputs_of(local):
    out = {k: v for k, v in local.items() if not k.startswith("_") and not isinstance(v, types.ModuleType)}
    if "result" in out:
        return {"result": out["result"]}
    return out


def execute(code_obj, inputs, asynchronous):
    if asynchronous not in GLOBALS:
        GLOBALS[asynchronous] = base_globals(asynchronous)
    g = dict(GLOBALS[asynchronous])
    local = dict(inputs)
    if code_obj.co_flags & 0x80:  # CO_COROUTINE: top-level await
        asyncio.run(eval(code_obj, g, local))
    else:
        exec(code_obj, g, local)
    return outputs_of(local)


def cpu_budget(seconds):
    """RLIMIT_CPU's soft limit moved to what this call may still use (the worker lives long, so the
    limit follows the calls); kailashd's own wall-clock timer is the first to act."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    now = int(used.ru_utime + used.ru_stime)
    soft = now + int(seconds) + 2
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))
    except (ValueError, OSError):
        pass


def answer_for(msg):
    cid = msg.get("id")
    code_id = msg.get("code_id")
    asynchronous = bool(msg.get("async"))
    key = (code_id, asynchronous)
    if "code" in msg:
        if len(CODES) >= MAX_CODES:
            CODES.clear()
        try:
            CODES[key] = compile_code(msg["code"], asynchronous)
        except Refused as e:
            CODES[key] = e
    if key not in CODES:
        return {"id": cid, "unknown_code": True}
    code_obj = CODES[key]
    if isinstance(code_obj, Refused):
        return {"id": cid, "ok": False, "kind": "refused", "error": str(code_obj)}
    cpu_budget(msg.get("timeout", 30))
    try:
        outputs = execute(code_obj, msg.get("inputs") or {}, asynchronous)
    except MemoryError:
        return {"id": cid, "ok": False, "kind": "memory", "error": "MemoryError: the code ran out of memory"}
    except ImportError as e:
        return {"id": cid, "ok": False, "kind": "import", "error": "Import error: %s" % e}
    except BaseException as e:  # noqa: B902 (SystemExit, KeyboardInterrupt from user code too)
        tb = traceback.extract_tb(e.__traceback__)
        line = next((f.lineno for f in reversed(tb) if f.filename == "<PythonCodeNode>"), None)
        where = " (line %d)" % line if line else ""
        return {"id": cid, "ok": False, "kind": "exception", "error": "%s: %s%s" % (type(e).__name__, e, where)}
    return {"id": cid, "ok": True, "outputs": outputs}


def encode(reply):
    try:
        text = json.dumps(reply, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        text = json.dumps({"id": reply.get("id"), "ok": False, "kind": "serialize",
                           "error": "the outputs are not JSON-serializable: %s" % e})
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FRAME:
        data = json.dumps({"id": reply.get("id"), "ok": False, "kind": "serialize",
                           "error": "the outputs are larger than %d bytes" % MAX_FRAME}).encode()
    return struct.pack(">I", len(data)) + data


def write_all(data):
    view = memoryview(data)
    while view:
        n = os.write(FD, view)
        view = view[n:]


def read_exact(n):
    parts = []
    while n:
        chunk = os.read(FD, min(n, 1 << 20))
        if not chunk:
            sys.exit(0)  # kailashd closed its end
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def main():
    os.set_inheritable(FD, False)
    sys.stdout = open(os.devnull, "w")  # print() in user code goes nowhere
    GLOBALS[False] = base_globals(False)
    write_all(encode({"ready": True, "pid": os.getpid()}))
    # stderr was the daemon's for start-up errors (a missing module, a bad path); from here on what
    # the code writes there (open("/dev/stderr")) must not reach the daemon's log
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    while True:
        (n,) = struct.unpack(">I", read_exact(4))
        if n == 0 or n > MAX_FRAME:
            sys.exit(2)
        msg = json.loads(read_exact(n))
        write_all(encode(answer_for(msg)))


if __name__ == "__main__":
    main()
