#!/usr/bin/env python3
"""uvhttp benchmark runner: measures HTTP servers against a raw-libuv ceiling.

Each target server runs pinned to one CPU (default 0) and wrk, the load
generator, to another (default 1). For every scenario the runner starts the
server afresh, waits for its port, checks one response by hand, runs the load,
and reads the server's CPU time and memory from /proc. Every figure is also
shown as a ratio to the ceiling's figure from the same run: on a shared machine
absolute numbers drift, ratios taken minutes apart do not drift much.

The pipelined scenario's p99 comes from a separate, short h2load pass run after
wrk's on the same server (wrk times whole pipelined batches and often prints no
usable p99 there); its throughput and CPU figures are wrk's, as everywhere.

See bench/README.md for what each column means. Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import http.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PIPELINE_DEPTH = 16
ECHO_BYTES = 4096
BIG_BYTES = 1024 * 1024
LOAD_CONNECTIONS = 64
IDLE_CONNECTIONS = 10_000
# Connections the idle scenario opens before it waits for their answers: paces the
# opening so a server with a short listen backlog is not flooded with SYNs.
IDLE_BATCH = 500
# The hyper peer builds outside the repository so it never touches its target/ or lock.
HYPER_TARGET_DIR = Path(
    os.environ.get("UVHTTP_BENCH_HYPER_TARGET_DIR")
    or Path(tempfile.gettempdir()) / "uvhttp-bench-hyper-target"
)
# The may_minihttp peer too, for the same reason, in a directory of its own.
MAY_TARGET_DIR = Path(
    os.environ.get("UVHTTP_BENCH_MAY_TARGET_DIR")
    or Path(tempfile.gettempdir()) / "uvhttp-bench-may-target"
)
NGINX_ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
# Where Debian's h2o package writes the PID of the system service it may start.
H2O_SERVICE_PID_FILE = Path("/run/h2o.pid")
# Concurrent `openssl s_time` processes of the handshake scenario. Each one runs one
# handshake at a time; one alone leaves the server idle during every round trip, four keep
# the client CPU busy (a full handshake costs the client more than the server).
HANDSHAKE_CLIENTS = 4
# The pipelined scenario's latency pass (h2load): main duration at most this many
# seconds (never longer than the wrk run), after a warm-up that h2load does not log.
# Even a slow target completes hundreds of thousands of requests in it: plenty for a p99.
H2LOAD_SECONDS = 3
H2LOAD_WARM_UP_SECONDS = 1


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    """One load pattern; `ceiling_args` tell the ceiling what to answer with."""

    name: str
    letter: str
    title: str
    method: str = "GET"
    path: str = "/"
    wrk_script: Optional[str] = None
    wrk_headers: List[str] = field(default_factory=list)
    expected_body: bytes = b"Hello, World!"
    ceiling_args: List[str] = field(default_factory=list)
    idle: bool = False
    # Served over HTTPS with the run's throwaway certificate.
    tls: bool = False
    # Load from `openssl s_time -new` (full handshakes) instead of wrk.
    handshakes: bool = False
    # p99 from a separate h2load pass after wrk's (per request, pipelined PIPELINE_DEPTH
    # deep): wrk's latency with pipelining is per batch, and often 0.00us (no figure).
    h2load_latency: bool = False
    # The target every ratio of this scenario is taken to. The ceiling has no TLS, so the
    # HTTPS scenarios compare with nginx serving the same certificate.
    baseline: str = "ceiling"


SCENARIOS = [
    Scenario("keepalive", "a", f"keep-alive GET /, {LOAD_CONNECTIONS} connections"),
    Scenario(
        "pipelined",
        "b",
        f"keep-alive GET /, {LOAD_CONNECTIONS} connections, pipelined {PIPELINE_DEPTH} deep",
        wrk_script="pipeline.lua",
        h2load_latency=True,
    ),
    Scenario(
        "close",
        "c",
        f"GET / with Connection: close, {LOAD_CONNECTIONS} concurrent",
        wrk_headers=["Connection: close"],
        ceiling_args=["--close"],
    ),
    Scenario(
        "echo",
        "d",
        f"POST /echo, {ECHO_BYTES} B bodies, {LOAD_CONNECTIONS} connections",
        method="POST",
        path="/echo",
        wrk_script="echo.lua",
        expected_body=b"x" * ECHO_BYTES,
        ceiling_args=["--body-bytes", str(ECHO_BYTES)],
    ),
    Scenario(
        "big",
        "e",
        f"GET /big?bytes={BIG_BYTES}, {LOAD_CONNECTIONS} connections",
        path=f"/big?bytes={BIG_BYTES}",
        expected_body=b"x" * BIG_BYTES,
        ceiling_args=["--body-bytes", str(BIG_BYTES)],
    ),
    Scenario("idle", "f", "idle keep-alive connections, one request each", idle=True),
    Scenario(
        "https-keepalive",
        "g",
        f"HTTPS keep-alive GET /, {LOAD_CONNECTIONS} connections",
        tls=True,
        baseline="nginx",
    ),
    Scenario(
        "https-handshake",
        "h",
        "HTTPS GET / on a new connection each time, full TLS handshakes (no resumption), "
        f"{HANDSHAKE_CLIENTS} openssl s_time -new clients",
        tls=True,
        handshakes=True,
        baseline="nginx",
    ),
]


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """A server to measure. `command` is a template: {port} and {run_dir} are filled in."""

    name: str
    command: List[str]
    prepare: Optional[Callable[["Target", "Context"], Optional[str]]] = None
    scenario_args: Callable[[Scenario], List[str]] = lambda scenario: []
    # Scenario name -> why this target cannot run it.
    unsupported: Dict[str, str] = field(default_factory=dict)
    # Scenario name -> a caveat printed with the result.
    notes: Dict[str, str] = field(default_factory=dict)
    skip_reason: Optional[str] = None
    # Extra arguments (templates with {tls_cert} and {tls_key}) that make the target serve
    # HTTPS; None: it cannot, and the HTTPS scenarios skip it with `no_tls_reason`.
    tls_args: Optional[List[str]] = None
    no_tls_reason: str = "no HTTPS set up for this target in bench/run.py"
    # Writes the files a server reads at start (its configuration, the files it serves)
    # into the run directory, for the port and, over HTTPS, the certificate of this start.
    configure: Optional[Callable[["Target", Path, int, Optional["TlsMaterial"]], None]] = None


@dataclass
class TlsMaterial:
    """The run's throwaway CA and server certificate (PEM files in a temporary directory)."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass
class Context:
    """Run-wide settings the targets' preparation needs."""

    build: bool
    run_dir: Path
    cargo_target_dir: Optional[Path] = None


def cargo_target_dir() -> Path:
    """The repository's cargo target directory (honours CARGO_TARGET_DIR and config)."""
    output = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(json.loads(output)["target_directory"])


def repo_examples() -> List[str]:
    """Names of the examples the repository's manifest declares or discovers."""
    output = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = []
    for package in json.loads(output)["packages"]:
        for target in package["targets"]:
            if "example" in target["kind"]:
                names.append(target["name"])
    return names


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def build_examples(context: Context, names: List[str]) -> Optional[str]:
    """Builds the repository's release examples; returns an error text on failure."""
    if not context.build or not names:
        return None
    command = ["cargo", "build", "--release"]
    for name in names:
        command += ["--example", name]
    print(f"building: {' '.join(command)}", flush=True)
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        return f"cargo build failed:\n{tail(result.stderr)}"
    return None


def prepare_example(name: str):
    """Preparation for a target that is one of the repository's examples."""

    def prepare(target: Target, context: Context) -> Optional[str]:
        binary = context.cargo_target_dir / "release" / "examples" / name
        target.command[0] = str(binary)
        if not binary.exists():
            return f"{binary} not found (no `{name}` example built yet)"
        return None

    return prepare


def prepare_cargo_peer(label: str, crate: str, binary_name: str, target_dir: Path):
    """Preparation for a peer that is its own cargo crate under bench/peers/: built with
    CARGO_TARGET_DIR outside the repository, so it never touches the repository's target/
    or lock file."""

    def prepare(target: Target, context: Context) -> Optional[str]:
        if shutil.which("cargo") is None:
            return "cargo not found"
        manifest = BENCH_DIR / "peers" / crate / "Cargo.toml"
        binary = target_dir / "release" / binary_name
        if context.build:
            print(f"building: {label} peer (CARGO_TARGET_DIR={target_dir})", flush=True)
            environment = dict(os.environ, CARGO_TARGET_DIR=str(target_dir))
            result = subprocess.run(
                ["cargo", "build", "--release", "--manifest-path", str(manifest)],
                capture_output=True,
                text=True,
                env=environment,
            )
            if result.returncode != 0:
                return f"building the {label} peer failed:\n{tail(result.stderr)}"
        if not binary.exists():
            return f"{binary} not found (run without --no-build)"
        target.command[0] = str(binary)
        return None

    return prepare


def prepare_node(target: Target, context: Context) -> Optional[str]:
    node = shutil.which("node")
    if node is None:
        return "node not found on PATH (Debian: apt-get install -y nodejs)"
    target.command[0] = node
    return None


def prepare_nginx(target: Target, context: Context) -> Optional[str]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return "nginx not found (Debian: apt-get install -y nginx-light)"
    target.command[0] = nginx
    if NGINX_ECHO_MODULE.exists():
        target.unsupported.pop("echo", None)
        target.notes["echo"] = "third-party echo module; answers chunked"
    else:
        target.unsupported["echo"] = (
            "nginx has no request-body echo built in "
            "(the third-party module, Debian libnginx-mod-http-echo, is not installed)"
        )
    return None


def write_nginx_config(run_dir: Path, port: int, tls: Optional[TlsMaterial]) -> None:
    """Fills in bench/peers/nginx.conf for one server start; HTTPS when `tls` is given."""
    template = (BENCH_DIR / "peers" / "nginx.conf").read_text()
    if NGINX_ECHO_MODULE.exists():
        load_echo = f"load_module {NGINX_ECHO_MODULE};"
        echo_body = "echo_read_request_body;\n            echo_request_body;"
    else:
        load_echo = ""
        echo_body = "return 501;"
    if tls:
        listen_ssl = " ssl"
        certificate = (f"ssl_certificate {tls.server_cert};\n"
                       f"        ssl_certificate_key {tls.server_key};")
    else:
        listen_ssl = ""
        certificate = "# plain HTTP: no certificate"
    config = (
        template.replace("@LOAD_ECHO_MODULE@", load_echo)
        .replace("@LISTEN_SSL@", listen_ssl)
        .replace("@TLS_CERTIFICATE@", certificate)
        .replace("@ECHO_BODY@", echo_body)
        .replace("@RUN_DIR@", str(run_dir))
        .replace("@PORT@", str(port))
    )
    (run_dir / "nginx.conf").write_text(config)
    write_big_file(run_dir)


def write_big_file(run_dir: Path) -> None:
    """big.bin, the 1 MiB the file servers (nginx, h2o) answer `/big` with."""
    big = run_dir / "big.bin"
    if not big.exists() or big.stat().st_size != BIG_BYTES:
        big.write_bytes(b"x" * BIG_BYTES)


def h2o_has_mruby(h2o: str) -> bool:
    """Whether this h2o build has mruby, which its /echo handler needs (`h2o -v` prints
    `mruby: YES`; Debian's 2.2.5 has it)."""
    result = subprocess.run([h2o, "-v"], capture_output=True, text=True)
    return re.search(r"^mruby:\s*YES", result.stdout + result.stderr, re.MULTILINE) is not None


def system_h2o_pid() -> Optional[int]:
    """The PID of a running system h2o (the Debian package's service), if there is one."""
    try:
        pid = int(H2O_SERVICE_PID_FILE.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def settle_h2o_service(installed_now: bool) -> None:
    """Debian's h2o package enables a system h2o on port 80 and starts it where services
    may start (in a container, policy-rc.d usually forbids it). It takes none of the
    benchmark's ports, but it would share the CPUs with the measured servers. One the
    runner has just installed is stopped and disabled; someone else's is only reported."""
    started = system_h2o_pid()
    if installed_now:
        if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
            # `disable` too: otherwise it starts again at the next boot.
            subprocess.run(["systemctl", "disable", "--now", "h2o"], capture_output=True)
        elif started is not None and shutil.which("service"):
            subprocess.run(["service", "h2o", "stop"], capture_output=True)
    pid = system_h2o_pid()
    if pid is not None:
        print(f"note: a system h2o (PID {pid}, {H2O_SERVICE_PID_FILE}) is running and shares the "
              f"CPUs with the measured servers (stop it: service h2o stop)", flush=True)
    elif installed_now and started is not None:
        print(f"h2o installed; stopped the system h2o the package started (PID {started})",
              flush=True)
    elif installed_now:
        print("h2o installed; the package started no system h2o", flush=True)


def prepare_h2o(target: Target, context: Context) -> Optional[str]:
    installed_before = shutil.which("h2o") is not None
    h2o = ensure_tool("h2o", "h2o")
    if h2o is None:
        return "h2o not found (Debian: apt-get install -y h2o)"
    settle_h2o_service(installed_now=not installed_before)
    target.command[0] = h2o
    if h2o_has_mruby(h2o):
        target.unsupported.pop("echo", None)
        target.notes["echo"] = "mruby handler (bench/peers/h2o_echo.rb)"
    else:
        target.unsupported["echo"] = (
            "this h2o is built without mruby, and h2o has no other way to echo a body"
        )
    return None


def write_h2o_config(target: Target, run_dir: Path, port: int, tls: Optional[TlsMaterial]) -> None:
    """Fills in bench/peers/h2o.conf for one server start and writes the files it serves;
    HTTPS when `tls` is given."""
    template = (BENCH_DIR / "peers" / "h2o.conf").read_text()
    # Started as root without `user:`, h2o switches to nobody, which cannot read the run
    # directory (mkdtemp makes it 0700).
    user = "user: root" if os.geteuid() == 0 else "# not root: h2o stays the runner's user"
    if "echo" in target.unsupported:
        echo_path = "      # no /echo: this h2o has no mruby"
    else:
        echo_path = f"      /echo:\n        mruby.handler-file: {BENCH_DIR / 'peers' / 'h2o_echo.rb'}"
    config = (
        template.replace("@USER@", user)
        # The listener's ssl block: its lines start with @TLS@, commented out for plain HTTP.
        .replace("@TLS@", "" if tls else "#")
        .replace("@TLS_CERT@", str(tls.server_cert) if tls else "-")
        .replace("@TLS_KEY@", str(tls.server_key) if tls else "-")
        .replace("@ECHO_PATH@", echo_path)
        .replace("@RUN_DIR@", str(run_dir))
        .replace("@PORT@", str(port))
    )
    (run_dir / "h2o.conf").write_text(config)
    root = run_dir / "h2o-root"
    root.mkdir(exist_ok=True)
    (root / "index.txt").write_bytes(b"Hello, World!")
    write_big_file(run_dir)


def builtin_targets() -> Dict[str, Target]:
    return {
        "ceiling": Target(
            "ceiling",
            # --defer-accept (Linux's TCP_DEFER_ACCEPT) for the ceiling, uvhttp and nginx
            # (`deferred`); h2o sets it by default. Connections are handed over once their
            # request is there, which makes short connections cheaper for every server that
            # asks for it.
            ["ceiling", "--host", HOST, "--port", "{port}", "--defer-accept"],
            prepare=prepare_example("ceiling"),
            scenario_args=lambda scenario: scenario.ceiling_args,
            no_tls_reason="the ceiling has no TLS (plain TCP only); HTTPS ratios are to nginx",
        ),
        "uvhttp": Target(
            "uvhttp",
            ["httpechoserver", "--port", "{port}", "--defer-accept"],
            prepare=prepare_example("httpechoserver"),
            tls_args=["--tls-cert", "{tls_cert}", "--tls-key", "{tls_key}"],
        ),
        "hyper": Target(
            "hyper",
            ["hyper-peer", "--host", HOST, "--port", "{port}"],
            prepare=prepare_cargo_peer("hyper", "hyper", "uvhttp-bench-hyper-peer", HYPER_TARGET_DIR),
        ),
        "may_minihttp": Target(
            "may_minihttp",
            ["may-peer", "--host", HOST, "--port", "{port}"],
            prepare=prepare_cargo_peer("may_minihttp", "may_minihttp", "uvhttp-bench-may-peer",
                                       MAY_TARGET_DIR),
            notes={"close": "may_minihttp never closes a connection itself: it answers "
                            "`Connection: close` with that header, and wrk closes"},
        ),
        "node": Target(
            "node",
            ["node", str(BENCH_DIR / "peers" / "node_http.js"), "--host", HOST, "--port", "{port}"],
            prepare=prepare_node,
        ),
        "nginx": Target(
            "nginx",
            ["nginx", "-p", "{run_dir}", "-c", "{run_dir}/nginx.conf", "-e", "{run_dir}/error.log"],
            prepare=prepare_nginx,
            # The certificate goes into the filled-in config, not onto the command line.
            tls_args=[],
            configure=lambda target, run_dir, port, tls: write_nginx_config(run_dir, port, tls),
        ),
        "h2o": Target(
            "h2o",
            ["h2o", "-c", "{run_dir}/h2o.conf"],
            prepare=prepare_h2o,
            # As with nginx, the certificate goes into the filled-in config.
            tls_args=[],
            configure=write_h2o_config,
        ),
    }


# --------------------------------------------------------------------------- tools


def apt_get(arguments: List[str]) -> subprocess.CompletedProcess:
    """One apt-get call that never asks a question; its output is kept for the error."""
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        return subprocess.run(["apt-get"] + arguments, capture_output=True, text=True,
                              env=environment, stdin=subprocess.DEVNULL, timeout=900)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(arguments, 1, "", "apt-get took over 15 minutes")


def ensure_tool(tool: str, package: str) -> Optional[str]:
    """The path of `tool`. When it is missing and we are root on a Debian-like machine
    (apt-get exists), installs `package` first; None if it is still missing."""
    path = shutil.which(tool)
    if path or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return path
    print(f"{tool} not found: installing it (apt-get install -y {package})", flush=True)
    result = apt_get(["install", "-y", package])
    if result.returncode != 0:
        # A fresh machine may have no package lists yet, or stale ones: refresh once.
        print("apt-get install failed; running apt-get update and trying again", flush=True)
        apt_get(["update"])
        result = apt_get(["install", "-y", package])
    if result.returncode != 0:
        print(f"apt-get install -y {package} failed:\n{tail(result.stderr or result.stdout, 4)}",
              flush=True)
    return shutil.which(tool)


def tool_version(command: List[str]) -> str:
    """The first line a tool prints about its version (wrk writes it to stdout, exiting 1)."""
    result = subprocess.run(command, capture_output=True, text=True)
    return (result.stdout or result.stderr).split("\n")[0]


# --------------------------------------------------------------------------- processes


LIVE_PROCESSES: Dict[int, subprocess.Popen] = {}


def stop_process(process: subprocess.Popen) -> None:
    """Stops a server we started (its whole process group), politely first."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    LIVE_PROCESSES.pop(process.pid, None)


def stop_all_processes() -> None:
    for process in list(LIVE_PROCESSES.values()):
        stop_process(process)


def free_port(taken: set) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def process_tree(pid: int) -> List[int]:
    """`pid` and its descendants (nginx or a wrapper script may fork)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int, user_only: bool = False) -> float:
    """User + system (or only user) CPU time of the process tree, all threads, in seconds."""
    ticks = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as stat:
                # Fields after the command name; utime and stime are fields 14 and 15.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + (0 if user_only else int(fields[12]))
    return ticks / CLOCK_TICKS


def memory_kib(pid: int, key: str) -> int:
    """A /proc/PID/status figure (VmRSS, VmHWM) summed over the process tree, in KiB."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def start_server(target: Target, scenario: Scenario, port: int, run_dir: Path, nofile: int,
                 tls: Optional[TlsMaterial]):
    """Starts the server pinned to the server CPU; returns (process, log path)."""
    tls = tls if scenario.tls else None
    if target.configure:
        target.configure(target, run_dir, port, tls)
    values = {"port": str(port), "run_dir": str(run_dir)}
    if tls:
        values |= {"tls_cert": str(tls.server_cert), "tls_key": str(tls.server_key)}
    command = [part.format(**values) for part in target.command]
    command += target.scenario_args(scenario)
    if tls:
        command += [part.format(**values) for part in target.tls_args]
    wrapper = ["taskset", "-c", str(ARGS.server_cpu)]
    if shutil.which("prlimit"):
        wrapper += ["prlimit", f"--nofile={nofile}:{nofile}"]
    log_path = run_dir / f"{target.name}-{scenario.name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            wrapper + command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    LIVE_PROCESSES[process.pid] = process
    return process, log_path


def wait_for_port(process: subprocess.Popen, port: int, log_path: Path, timeout: float = 15.0):
    """Returns None once the port accepts connections, else why it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode} before listening:\n{tail(log_path.read_text(errors='replace'))}"
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return None
        except OSError:
            time.sleep(0.05)
    return f"not listening on port {port} after {timeout:.0f} s:\n{tail(log_path.read_text(errors='replace'))}"


def check_response(scenario: Scenario, port: int, tls: Optional[TlsMaterial] = None) -> Optional[str]:
    """One request by hand: the server must answer this scenario correctly. Over HTTPS the
    certificate must also verify against the run's CA, for 127.0.0.1."""
    if scenario.tls:
        context = ssl.create_default_context(cafile=str(tls.ca_cert))
        connection = http.client.HTTPSConnection(HOST, port, timeout=10, context=context)
    else:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        headers = {}
        body = None
        if scenario.method == "POST":
            body = b"x" * ECHO_BYTES
            headers["Content-Type"] = "application/octet-stream"
        for header in scenario.wrk_headers:
            name, value = header.split(":", 1)
            headers[name] = value.strip()
        connection.request(scenario.method, scenario.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        return f"check request failed: {error}"
    finally:
        connection.close()
    if response.status != 200:
        return f"check request got status {response.status}"
    if payload != scenario.expected_body:
        return f"check request got a wrong body ({len(payload)} bytes: {payload[:40]!r}...)"
    return None


# --------------------------------------------------------------------------- load


LATENCY_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_latency(text: str) -> Optional[float]:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * LATENCY_UNITS[match.group(2)] if match else None


def run_wrk(scenario: Scenario, port: int, duration: float) -> dict:
    """Runs wrk pinned to the client CPU and returns its figures."""
    command = [
        "taskset", "-c", str(ARGS.client_cpu),
        "wrk", "-t1", f"-c{LOAD_CONNECTIONS}", f"-d{duration:g}s", "--latency", "--timeout", "5s",
    ]
    if scenario.wrk_script:
        command += ["-s", str(BENCH_DIR / "wrk" / scenario.wrk_script)]
    for header in scenario.wrk_headers:
        command += ["-H", header]
    scheme = "https" if scenario.tls else "http"
    command.append(f"{scheme}://{HOST}:{port}{scenario.path}")
    environment = dict(
        os.environ, BENCH_PIPELINE_DEPTH=str(PIPELINE_DEPTH), BENCH_ECHO_BYTES=str(ECHO_BYTES)
    )
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=duration + 60
    )
    output = result.stdout
    figures = {"wrk_output": output}
    if result.returncode != 0 or "requests in" not in output:
        figures["error"] = f"wrk failed (status {result.returncode}): {tail(result.stderr or output)}"
        return figures
    requests = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    figures["requests"] = int(requests.group(1))
    figures["req_per_s"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    figures["p99_us"] = parse_latency(p99.group(1)) if p99 else None
    problems = []
    if not figures["p99_us"]:
        # wrk 4.1 prints 0.00us when its coordinated-omission correction overflows its
        # histogram (seen with pipelining): that is no measurement.
        figures["p99_us"] = None
        # Not worth a note where the p99 shown is h2load's anyway.
        if not (scenario.h2load_latency and ARGS.h2load):
            problems.append("wrk gave no usable p99")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors and any(int(count) for count in errors.groups()):
        problems.append("socket errors: connect {}, read {}, write {}, timeout {}".format(*errors.groups()))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        problems.append(f"{non_2xx.group(1)} non-2xx answers")
    if problems:
        figures["problems"] = "; ".join(problems)
    return figures


H2LOAD_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout$", re.MULTILINE)
H2LOAD_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx$", re.MULTILINE)


def latency_seconds() -> int:
    """Main duration of the h2load pass: H2LOAD_SECONDS, but no longer than the wrk run
    (h2load takes whole seconds)."""
    return max(1, min(H2LOAD_SECONDS, int(ARGS.duration)))


def p99_from_h2load_log(log_path: Path) -> dict:
    """p99 of the per-request times in an h2load --log-file, in microseconds.

    Each line is tab-separated: request start (microseconds since the epoch), HTTP status
    (-1 for a failed request), microseconds until the end of the response (h2load's man
    page; later versions may add columns after these). Failed requests have no latency
    and are only counted. Counts per microsecond value keep memory small: the ceiling
    completes millions of requests in a few seconds.
    """
    counts: Dict[int, int] = {}
    failed = malformed = 0
    with open(log_path) as log:
        for line in log:
            columns = line.split("\t")
            if len(columns) < 3 or not columns[2].strip().isdigit():
                malformed += 1
                continue
            if columns[1] == "-1":
                failed += 1
                continue
            duration = int(columns[2])
            counts[duration] = counts.get(duration, 0) + 1
    logged = sum(counts.values())
    figures = {"logged": logged, "failed_in_log": failed, "malformed_lines": malformed, "p99_us": None}
    if logged:
        # Nearest rank: the smallest time that at least 99 % of the requests took at most.
        rank, seen = -(-logged * 99 // 100), 0
        for duration in sorted(counts):
            seen += counts[duration]
            if seen >= rank:
                figures["p99_us"] = float(duration)
                break
    return figures


def run_h2load_latency(scenario: Scenario, port: int, pid: int, log_path: Path) -> dict:
    """The pipelined scenario's latency pass: h2load over HTTP/1.1 with wrk's connection
    count, one thread on the client CPU, PIPELINE_DEPTH requests in flight per connection
    (for HTTP/1.1 h2load's -m is the pipelining depth), for a fixed time, every request's
    time logged. Returns the p99 per request and h2load's counts; throughput and CPU stay
    wrk's, so this is measured apart from them."""
    seconds = latency_seconds()
    # h2load appends to an existing log file: start from an empty one.
    log_path.unlink(missing_ok=True)
    command = [
        "taskset", "-c", str(ARGS.client_cpu),
        ARGS.h2load, "--h1", f"-c{LOAD_CONNECTIONS}", "-t1", f"-m{PIPELINE_DEPTH}",
        f"-D{seconds}", f"--warm-up-time={H2LOAD_WARM_UP_SECONDS}", f"--log-file={log_path}",
        f"http://{HOST}:{port}{scenario.path}",
    ]
    try:
        # The server's CPU share during the pass (warm-up included) is kept apart from the
        # scenario's figures: well below 100 % means h2load, not the server, set the pace,
        # so the p99 is then mostly h2load's own, as wrk's srv CPU tells for wrk's figures.
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=seconds + H2LOAD_WARM_UP_SECONDS + 60)
        except subprocess.TimeoutExpired:
            # h2load waits for answers without a limit: a server that stops answering stalls it.
            return {"error": "h2load did not finish (did the server stop answering?)"}
        output = result.stdout
        figures: dict = {"h2load_output": output, "server_cpu_pct":
                         100.0 * (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)}
        requests = H2LOAD_REQUESTS.search(output)
        statuses = H2LOAD_STATUS.search(output)
        if result.returncode != 0 or not requests or not statuses:
            figures["error"] = f"h2load failed (status {result.returncode}): {tail(result.stderr or output, 4)}"
            return figures
        figures |= p99_from_h2load_log(log_path)
    finally:
        # Tens of megabytes for the ceiling: gone before the next target runs.
        log_path.unlink(missing_ok=True)
    done, failed, errored, timed_out = (int(requests.group(i)) for i in (3, 5, 6, 7))
    ok, redirected, client_errors, server_errors = map(int, statuses.groups())
    figures |= {"failed": failed, "errored": errored, "timeout": timed_out, "status_2xx": ok,
                "status_other": redirected + client_errors + server_errors}
    figures["requests"] = done
    figures["req_per_s"] = done / seconds
    problems = []
    if failed or errored or timed_out:
        problems.append(f"{failed} failed, {errored} errored, {timed_out} timed out")
    if figures["status_other"]:
        problems.append(f"{figures['status_other']} non-2xx answers")
    if not ok or figures["p99_us"] is None:
        problems.append("no successful request logged")
    if figures["malformed_lines"]:
        problems.append(f"{figures['malformed_lines']} unreadable log lines")
    if problems:
        figures["problems"] = "; ".join(problems)
    return figures


def add_latency_pass(figures: dict, scenario: Scenario, port: int, pid: int, log_path: Path) -> None:
    """Runs the h2load pass and makes its p99 the one shown; wrk's (per batch, often none)
    is kept as `wrk_p99_us`. A failed pass leaves no p99 and says why in the problems."""
    latency = run_h2load_latency(scenario, port, pid, log_path)
    if not ARGS.verbose:
        latency.pop("h2load_output", None)
    figures["wrk_p99_us"] = figures.get("p99_us")
    figures["p99_us"] = latency.get("p99_us")
    figures["p99_source"] = (f"h2load --h1 -c{LOAD_CONNECTIONS} -t1 -m{PIPELINE_DEPTH}, "
                             f"{latency_seconds()} s, per request")
    figures["h2load"] = latency
    problem = latency.get("error") or latency.get("problems")
    if problem:
        add_problem(figures, f"h2load: {problem.splitlines()[0]}")


def add_problem(figures: dict, problem: str) -> None:
    figures["problems"] = "; ".join(filter(None, (figures.get("problems"), problem)))


S_TIME_TOTALS = re.compile(r"^(\d+) connections in [\d.]+s; [\d.]+ connections/user sec, bytes read (\d+)$",
                           re.MULTILINE)


def run_handshakes(port: int, duration: float) -> dict:
    """Full TLS handshakes per second, from HANDSHAKE_CLIENTS `openssl s_time -new` processes.

    wrk cannot measure this: after a `Connection: close` answer it reconnects with
    SSL_clear(), which keeps the session, so nearly all its later handshakes are resumed.
    `s_time -new` makes a fresh session every time, sends `GET / HTTP/1.0`, and reads the
    answer until the server closes. It marks each connection `*` (new session) or `r`
    (reused), which is checked. s_time times its runs in whole seconds, so the rate here is
    taken over the wall time the runner measures itself.
    """
    seconds = max(1, round(duration))
    command = [
        "taskset", "-c", str(ARGS.client_cpu),
        "openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", "-www", "/",
        "-time", str(seconds),
    ]
    started = time.monotonic()
    clients = [
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(HANDSHAKE_CLIENTS)
    ]
    outputs = []
    try:
        for client in clients:
            outputs.append(client.communicate(timeout=seconds + 30)[0])
    except subprocess.TimeoutExpired:
        # s_time reads each answer until the server closes: a server that keeps an
        # HTTP/1.0 connection open stalls it.
        return {"error": "openssl s_time did not finish: does the server close the connection "
                         "after answering an HTTP/1.0 request?"}
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    wall = time.monotonic() - started
    output = "\n".join(outputs)
    figures = {"wrk_output": output, "wall_s": wall, "p99_us": None}
    connections = bytes_read = reused = 0
    for client, text in zip(clients, outputs):
        totals = S_TIME_TOTALS.search(text)
        if client.returncode != 0 or not totals:
            figures["error"] = f"openssl s_time failed (status {client.returncode}): {tail(text, 4)}"
            return figures
        connections += int(totals.group(1))
        bytes_read += int(totals.group(2))
        # Progress marks: one character per connection, `r` for a resumed session.
        reused += sum(line.count("r") for line in text.splitlines() if re.fullmatch(r"[*rt3]+", line))
    figures["requests"] = connections
    figures["req_per_s"] = connections / wall
    problems = []
    if reused:
        problems.append(f"{reused} handshakes resumed a session")
    # Every connection must have carried an answer: at least the body, on average.
    if connections and bytes_read / connections < len(b"Hello, World!"):
        problems.append(f"only {bytes_read / connections:.0f} bytes read per connection")
    if problems:
        figures["problems"] = "; ".join(problems)
    return figures


def negotiated_tls(port: int, tls: TlsMaterial) -> str:
    """Protocol, cipher suite and key-exchange group of one `openssl s_client` handshake with
    OpenSSL's default client settings, which wrk and s_time use too."""
    try:
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-CAfile", str(tls.ca_cert),
             "-verify_return_error", "-brief"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"negotiated TLS unknown (openssl s_client: {error})"
    text = result.stdout + result.stderr
    found = {}
    for key in ("Protocol version", "Ciphersuite", "Server Temp Key", "Verification"):
        match = re.search(rf"^{key}: (.+)$", text, re.MULTILINE)
        found[key] = match.group(1).strip() if match else "?"
    group = found["Server Temp Key"].split(",")[0]
    summary = f"{found['Protocol version']} {found['Ciphersuite']} {group}"
    if found["Verification"] != "OK":
        summary += f" (certificate verification: {found['Verification']})"
    return summary


def make_tls_material() -> TlsMaterial:
    """A throwaway CA and a server certificate it signs (EC P-256, SAN 127.0.0.1 and
    localhost), made with the openssl CLI in a new temporary directory. Raises
    RuntimeError with openssl's message if a step fails."""
    directory = Path(tempfile.mkdtemp(prefix="uvhttp-bench-tls-"))
    material = TlsMaterial(directory, directory / "ca.pem", directory / "server.pem",
                           directory / "server.key")
    ca_key, csr, extensions = directory / "ca.key", directory / "server.csr", directory / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    )
    p256 = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    steps = [
        p256 + ["-out", str(ca_key)],
        ["req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "2",
         "-subj", "/CN=uvhttp bench throwaway CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(material.ca_cert)],
        p256 + ["-out", str(material.server_key)],
        ["req", "-new", "-key", str(material.server_key), "-subj", "/CN=localhost", "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", str(material.ca_cert), "-CAkey", str(ca_key),
         "-set_serial", "1", "-days", "2", "-sha256", "-extfile", str(extensions),
         "-out", str(material.server_cert)],
    ]
    for step in steps:
        result = subprocess.run(["openssl"] + step, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"openssl {step[0]} failed: {tail(result.stderr, 3)}")
    return material


def read_response(connection: socket.socket) -> bool:
    """Reads one complete response with a Content-Length body; False if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    remaining = int(length.group(1)) - len(body) if length else 0
    while remaining > 0:
        chunk = connection.recv(min(remaining, 65536))
        if not chunk:
            return False
        remaining -= len(chunk)
    return True


def run_idle(pid: int, port: int, count: int) -> dict:
    """Opens `count` keep-alive connections, one request each, and leaves them idle."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    connections: List[socket.socket] = []
    previous_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {ARGS.client_cpu})
    try:
        time.sleep(0.3)
        rss_before = memory_kib(pid, "VmRSS")
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        while len(connections) < count:
            batch = []
            for _ in range(min(IDLE_BATCH, count - len(connections))):
                connection = socket.create_connection((HOST, port), timeout=10)
                connection.sendall(request)
                batch.append(connection)
                connections.append(connection)
            for connection in batch:
                if not read_response(connection):
                    return {"error": f"server closed connection {len(connections)} before answering"}
        elapsed = time.monotonic() - started
        cpu_used = cpu_seconds(pid) - cpu_before
        # Let the server settle (deferred frees, allocator trimming) before measuring.
        time.sleep(1.0)
        rss_after = memory_kib(pid, "VmRSS")
        still_open = sum(1 for connection in connections if connection_alive(connection))
        figures = {
            "requests": count,
            "setup_s": elapsed,
            "cpu_s": cpu_used,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "kib_per_conn": (rss_after - rss_before) / count,
        }
        if still_open < count:
            figures["problems"] = f"server closed {count - still_open} of the idle connections"
        return figures
    except OSError as error:
        return {"error": f"after {len(connections)} connections: {error}"}
    finally:
        for connection in connections:
            connection.close()
        os.sched_setaffinity(0, previous_affinity)


def connection_alive(connection: socket.socket) -> bool:
    """True if the peer has neither closed nor reset the (idle) connection."""
    try:
        connection.setblocking(False)
        return connection.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def measure(target: Target, scenario: Scenario, run_dir: Path, ports: set, nofile: int,
            tls: Optional[TlsMaterial]) -> dict:
    """Starts the target, measures one scenario, stops it. Always stops it."""
    port = free_port(ports)
    process, log_path = start_server(target, scenario, port, run_dir, nofile, tls)
    try:
        problem = wait_for_port(process, port, log_path)
        if problem:
            return {"error": problem}
        negotiated = None
        if not scenario.idle:
            problem = check_response(scenario, port, tls)
            if problem:
                return {"error": problem}
            if scenario.tls:
                negotiated = negotiated_tls(port, tls)
        else:
            # One request first, so the baseline includes a served request's warm state.
            problem = check_response(SCENARIOS[0], port)
            if problem:
                return {"error": problem}
        if scenario.idle:
            figures = run_idle(process.pid, port, ARGS.idle_connections)
        else:
            cpu_before = cpu_seconds(process.pid)
            user_before = cpu_seconds(process.pid, user_only=True)
            if scenario.handshakes:
                figures = run_handshakes(port, ARGS.duration)
            else:
                figures = run_wrk(scenario, port, ARGS.duration)
            figures["cpu_s"] = cpu_seconds(process.pid) - cpu_before
            figures["user_cpu_s"] = cpu_seconds(process.pid, user_only=True) - user_before
            if not ARGS.verbose:
                figures.pop("wrk_output", None)
        if negotiated:
            figures["tls"] = negotiated
        if process.poll() is not None:
            figures["error"] = f"server exited (status {process.returncode}) during the run:\n{tail(log_path.read_text(errors='replace'))}"
            return figures
        figures["peak_rss_kib"] = memory_kib(process.pid, "VmHWM")
        if scenario.h2load_latency and ARGS.h2load and "error" not in figures:
            # Only now, with wrk's CPU time and peak memory read: the latency pass's load
            # must not count into them.
            add_latency_pass(figures, scenario, port, process.pid,
                             run_dir / f"{target.name}-{scenario.name}-h2load.tsv")
            if process.poll() is not None:
                figures["error"] = f"server exited (status {process.returncode}) during the h2load pass:\n{tail(log_path.read_text(errors='replace'))}"
                return figures
        if figures.get("requests"):
            figures["cpu_us_per_req"] = figures["cpu_s"] * 1e6 / figures["requests"]
            if "user_cpu_s" in figures:
                figures["user_us_per_req"] = figures["user_cpu_s"] * 1e6 / figures["requests"]
            wall = figures.get("wall_s", figures.get("setup_s", ARGS.duration))
            figures["server_cpu_pct"] = 100.0 * figures["cpu_s"] / wall
        return figures
    finally:
        stop_process(process)


# --------------------------------------------------------------------------- report


def ratio(value, base) -> Optional[float]:
    if value is None or base is None or base <= 0:
        return None
    return value / base


def fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def fmt_latency(us: Optional[float]) -> str:
    if us is None:
        return "-"
    return f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"


def baseline_label(scenario: Scenario) -> str:
    return "x ceil" if scenario.baseline == "ceiling" else f"x {scenario.baseline}"


def print_table(scenario: Scenario, results: Dict[str, dict]) -> None:
    # Named `ceiling` for the common case; for the HTTPS scenarios it is nginx's figures.
    ceiling = results.get(scenario.baseline, {})
    x = baseline_label(scenario)
    per = "hs" if scenario.handshakes else "req"
    if scenario.idle:
        columns = ["target", "KiB/conn", x, "CPU us/conn", x, "peak RSS", x, "notes"]
    else:
        columns = ["target", f"{per}/s", x, f"CPU us/{per}", x, f"user us/{per}", "srv CPU",
                   "p99", x, "peak RSS", x, "notes"]
    rows = []
    for name, figures in results.items():
        if "skipped" in figures:
            rows.append([name] + ["-"] * (len(columns) - 2) + [f"skipped: {figures['skipped']}"])
            continue
        if "error" in figures:
            rows.append([name] + ["-"] * (len(columns) - 2) + [f"FAILED: {figures['error'].splitlines()[0]}"])
            continue
        rss_mib = figures.get("peak_rss_kib", 0) / 1024
        base_rss = ceiling.get("peak_rss_kib", 0) / 1024 if ceiling.get("peak_rss_kib") else None
        common_tail = [
            f"{rss_mib:.1f} MiB",
            fmt(ratio(rss_mib, base_rss), "{:.2f}"),
            "; ".join(note for note in (figures.get("tls"), figures.get("note"), figures.get("problems"))
                      if note),
        ]
        if scenario.idle:
            row = [
                name,
                fmt(figures.get("kib_per_conn"), "{:.2f}"),
                fmt(ratio(figures.get("kib_per_conn"), ceiling.get("kib_per_conn")), "{:.2f}"),
                fmt(figures.get("cpu_us_per_req"), "{:.1f}"),
                fmt(ratio(figures.get("cpu_us_per_req"), ceiling.get("cpu_us_per_req")), "{:.2f}"),
            ]
        else:
            row = [
                name,
                fmt(figures.get("req_per_s"), "{:,.0f}"),
                fmt(ratio(figures.get("req_per_s"), ceiling.get("req_per_s")), "{:.2f}"),
                fmt(figures.get("cpu_us_per_req"), "{:.2f}"),
                fmt(ratio(figures.get("cpu_us_per_req"), ceiling.get("cpu_us_per_req")), "{:.2f}"),
                fmt(figures.get("user_us_per_req"), "{:.2f}"),
                fmt(figures.get("server_cpu_pct"), "{:.0f}%"),
                fmt_latency(figures.get("p99_us")),
                fmt(ratio(figures.get("p99_us"), ceiling.get("p99_us")), "{:.2f}"),
            ]
        rows.append(row + common_tail)
    widths = [max(len(str(row[i])) for row in rows + [columns]) for i in range(len(columns) - 1)]
    lines = []
    for row in [columns] + rows:
        cells = [str(cell).rjust(width) if i else str(cell).ljust(width) for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [str(row[-1])]).rstrip())
    print("\n".join(lines), flush=True)
    if scenario.h2load_latency and any("p99_source" in figures for figures in results.values()):
        print(f"p99 here: per request, from a separate {latency_seconds()} s h2load pass after wrk's "
              f"(HTTP/1.1, {LOAD_CONNECTIONS} connections, {PIPELINE_DEPTH} requests in flight on "
              f"each); req/s and CPU are wrk's", flush=True)


def print_summary(all_results: Dict[str, Dict[str, dict]], target_names: List[str],
                  scenarios: List[Scenario]) -> None:
    """The ranking figure for every target and scenario: CPU per request / the baseline's."""
    print("\n== summary: server CPU time per request as a ratio to the ceiling (lower is better; "
          "idle: KiB per connection ratio; https-*: ratio to nginx, per handshake for "
          "https-handshake) ==")
    names = [name for name in all_results]
    baselines = {scenario.name: scenario.baseline for scenario in scenarios}
    rows = [["target"] + names]
    for target in target_names:
        row = [target]
        for scenario_name in names:
            results = all_results[scenario_name]
            figures, ceiling = results.get(target, {}), results.get(baselines[scenario_name], {})
            key = "kib_per_conn" if scenario_name == "idle" else "cpu_us_per_req"
            row.append(fmt(ratio(figures.get(key), ceiling.get(key)), "{:.2f}"))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))))


def machine_description() -> dict:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    wrk_version = tool_version(["wrk", "-v"])
    openssl_version = "openssl CLI not found"
    if shutil.which("openssl"):
        openssl_version = subprocess.run(["openssl", "version"], capture_output=True,
                                         text=True).stdout.split(" (")[0].strip() or "openssl"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "wrk": wrk_version.split(" [")[0].strip(),
        "openssl": openssl_version,
        "h2load": tool_version([ARGS.h2load, "--version"]) if ARGS.h2load else None,
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark HTTP servers against the raw-libuv ceiling (see bench/README.md).")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per scenario (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 s per scenario")
    parser.add_argument("--only", help="comma-separated scenarios (names or letters): "
                        + ",".join(f"{s.name}({s.letter})" for s in SCENARIOS))
    parser.add_argument("--targets", help="comma-separated target names (default: all built-in and "
                        "--target ones); the ceiling always runs")
    parser.add_argument("--target", action="append", default=[], metavar="NAME=COMMAND",
                        help="add a target: a command line with {port} where the port goes "
                        "(e.g. 'mine=./server --port {port}'); repeatable")
    parser.add_argument("--json", metavar="FILE", help="also write all figures to FILE")
    parser.add_argument("--no-build", action="store_true", help="use already built binaries")
    parser.add_argument("--idle-connections", type=int, default=IDLE_CONNECTIONS,
                        help=f"connections for the idle scenario (default {IDLE_CONNECTIONS})")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="keep wrk's (and h2load's) output in the JSON")
    parser.add_argument("--keep-logs", action="store_true", help="keep server logs and configs")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 2.0
    return args


def select_scenarios(only: Optional[str]) -> List[Scenario]:
    if not only:
        return SCENARIOS
    by_key = {s.name: s for s in SCENARIOS} | {s.letter: s for s in SCENARIOS}
    chosen = []
    for key in only.split(","):
        key = key.strip()
        if key not in by_key:
            sys.exit(f"unknown scenario {key!r}; choose from {', '.join(s.name for s in SCENARIOS)}")
        chosen.append(by_key[key])
    return [s for s in SCENARIOS if s in chosen]


def select_targets(args, scenarios: List[Scenario]) -> List[Target]:
    targets = builtin_targets()
    for spec in args.target:
        name, separator, command = spec.partition("=")
        if not separator or "{port}" not in command:
            sys.exit(f"--target {spec!r}: expected NAME=COMMAND with {{port}} in the command")
        targets[name] = Target(name, shlex.split(command))
    if args.targets:
        wanted = [name.strip() for name in args.targets.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in targets]
        if unknown:
            sys.exit(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(targets)}")
        if "ceiling" not in wanted:
            wanted.insert(0, "ceiling")
        # The HTTPS scenarios' ratios are to nginx, as the others' are to the ceiling.
        if "nginx" not in wanted and any(s.baseline == "nginx" for s in scenarios):
            wanted.append("nginx")
    else:
        wanted = list(targets)
    return [targets[name] for name in ["ceiling"] + [n for n in wanted if n != "ceiling"]]


def raise_nofile_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def main() -> int:
    global ARGS
    ARGS = parse_args()
    if ensure_tool("wrk", "wrk") is None:
        sys.exit("wrk not found (apt-get install -y wrk)")
    if shutil.which("taskset") is None:
        sys.exit("taskset not found (apt-get install -y util-linux)")
    available = os.sched_getaffinity(0)
    if ARGS.server_cpu not in available or ARGS.client_cpu not in available or ARGS.server_cpu == ARGS.client_cpu:
        sys.exit(f"need two distinct usable CPUs for --server-cpu/--client-cpu; have {sorted(available)}")
    scenarios = select_scenarios(ARGS.only)
    # h2load only gives the pipelined scenario's p99; without it that scenario runs as before.
    ARGS.h2load = None
    if any(s.h2load_latency for s in scenarios):
        ARGS.h2load = ensure_tool("h2load", "nghttp2-client")
        if ARGS.h2load is None:
            print("note: h2load not found (apt-get install -y nghttp2-client): "
                  "no p99 for the pipelined scenario", flush=True)
    targets = select_targets(ARGS, scenarios)

    nofile = raise_nofile_limit(ARGS.idle_connections + 200)
    if any(s.idle for s in scenarios) and nofile < ARGS.idle_connections + 100:
        ARGS.idle_connections = max(100, nofile - 100)
        print(f"note: open-file limit is {nofile}; idle scenario uses {ARGS.idle_connections} connections")

    # A SIGTERM (or a closed terminal) must still stop the servers: turn it into an exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    run_dir = Path(tempfile.mkdtemp(prefix="uvhttp-bench-"))
    tls: Optional[TlsMaterial] = None
    tls_problem: Optional[str] = None
    try:
        if any(s.tls for s in scenarios):
            if shutil.which("openssl") is None:
                tls_problem = "openssl CLI not found (apt-get install -y openssl)"
            else:
                try:
                    tls = make_tls_material()
                except RuntimeError as error:
                    tls_problem = f"cannot make the throwaway certificate: {error}"
            if tls_problem:
                print(f"skip the HTTPS scenarios: {tls_problem}", flush=True)
        return run(scenarios, targets, run_dir, nofile, tls, tls_problem)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_all_processes()
        # The throwaway key goes whatever happens, --keep-logs or not.
        if tls:
            shutil.rmtree(tls.directory, ignore_errors=True)
        if ARGS.keep_logs:
            print(f"logs and configs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def run(scenarios: List[Scenario], targets: List[Target], run_dir: Path, nofile: int,
        tls: Optional[TlsMaterial], tls_problem: Optional[str]) -> int:
    context = Context(build=not ARGS.no_build, run_dir=run_dir)
    # Only the plain-HTTP scenarios compare with the ceiling; without them it is not built.
    needs_ceiling = any(s.baseline == "ceiling" for s in scenarios)
    try:
        context.cargo_target_dir = cargo_target_dir()
        examples = repo_examples()
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"cannot read the repository's cargo metadata: {error}")
    wanted_examples = [name for name, target_name in (("ceiling", "ceiling"), ("httpechoserver", "uvhttp"))
                       if name in examples and any(t.name == target_name for t in targets)
                       and (needs_ceiling or name != "ceiling")]
    build_error = build_examples(context, wanted_examples)
    for target in targets:
        if target.name == "ceiling" and not needs_ceiling:
            continue
        if build_error and target.prepare is not None and target.name in ("ceiling", "uvhttp"):
            target.skip_reason = build_error
        elif target.prepare is not None:
            target.skip_reason = target.prepare(target, context)
        if target.skip_reason:
            print(f"skip {target.name}: {target.skip_reason}", flush=True)
    if needs_ceiling and targets[0].skip_reason:
        print("the ceiling is unavailable, so no ratios can be given", file=sys.stderr)
        return 1

    description = machine_description()
    print(f"\nmachine: {description['cpu']}, {description['cpus']} CPUs, Linux {description['kernel']}, "
          f"{description['wrk']}; load average at start {' '.join(description['loadavg_at_start'])}")
    print(f"server on CPU {ARGS.server_cpu}, wrk (1 thread) on CPU {ARGS.client_cpu}; "
          f"{ARGS.duration:g} s per scenario; ratios are to the ceiling in the same run")
    if tls:
        print(f"https-*: throwaway EC P-256 certificate; clients use {description['openssl']}; "
              f"ratios are to nginx in the same run (the ceiling has no TLS); https-handshake "
              f"load from {HANDSHAKE_CLIENTS} `openssl s_time -new` on CPU {ARGS.client_cpu}")
    if ARGS.h2load:
        print(f"pipelined: p99 per request from {description['h2load']} (--h1 -c{LOAD_CONNECTIONS} -t1 "
              f"-m{PIPELINE_DEPTH}, {latency_seconds()} s after a {H2LOAD_WARM_UP_SECONDS} s warm-up) "
              f"on CPU {ARGS.client_cpu}, run after wrk on the same server; req/s and CPU are wrk's")

    ports: set = set()
    all_results: Dict[str, Dict[str, dict]] = {}
    for scenario in scenarios:
        heading = scenario.title if not scenario.idle else f"{ARGS.idle_connections:,} {scenario.title}"
        print(f"\n== {scenario.name} ({scenario.letter}): {heading} ==", flush=True)
        results: Dict[str, dict] = {}
        for target in targets:
            if scenario.tls and tls is None:
                results[target.name] = {"skipped": tls_problem}
            elif scenario.tls and target.tls_args is None:
                results[target.name] = {"skipped": target.no_tls_reason}
            elif target.skip_reason:
                results[target.name] = {"skipped": target.skip_reason.splitlines()[0]}
            elif scenario.name in target.unsupported:
                results[target.name] = {"skipped": target.unsupported[scenario.name]}
            else:
                results[target.name] = measure(target, scenario, run_dir, ports, nofile, tls)
                if scenario.name in target.notes:
                    results[target.name]["note"] = target.notes[scenario.name]
            if "error" in results[target.name]:
                print(f"{target.name}: {results[target.name]['error']}", file=sys.stderr, flush=True)
        all_results[scenario.name] = results
        print_table(scenario, results)
    measured = [t.name for t in targets
                if any("skipped" not in results[t.name] for results in all_results.values())]
    print_summary(all_results, measured, scenarios)

    if ARGS.json:
        with open(ARGS.json, "w") as output:
            json.dump({
                "machine": description,
                "settings": {
                    "duration_s": ARGS.duration,
                    "connections": LOAD_CONNECTIONS,
                    "pipeline_depth": PIPELINE_DEPTH,
                    "echo_bytes": ECHO_BYTES,
                    "big_bytes": BIG_BYTES,
                    "idle_connections": ARGS.idle_connections,
                    "server_cpu": ARGS.server_cpu,
                    "client_cpu": ARGS.client_cpu,
                    "handshake_clients": HANDSHAKE_CLIENTS,
                    "h2load_seconds": latency_seconds() if ARGS.h2load else None,
                    "h2load_warm_up_seconds": H2LOAD_WARM_UP_SECONDS if ARGS.h2load else None,
                },
                "results": all_results,
            }, output, indent=2)
        print(f"\nfigures written to {ARGS.json}")
    return 0


ARGS = None

if __name__ == "__main__":
    sys.exit(main())
