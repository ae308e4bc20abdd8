"""The language server, driven over its protocol: JSON-RPC frames on the stdio of `resdsl lsp`.

The exchange is a fixed script (initialize, didOpen, publishDiagnostics, didChange, hover, definition,
shutdown, exit); every read is of one frame, at most a fixed number of frames per expectation, and a
guard stops a hung server rather than timing anything.
"""
import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("pygls")
ROOT = Path(__file__).resolve().parent.parent

GOOD = """block unit(planes) {
    conv1: conv(planes, kernel_size=3, padding=1)
    relu
}

network tiny() {
    input x: [3, 16, 16]
    a: unit(8)
    b: unit(16)
    fc: conv(4, kernel_size=1)
    output y
}
"""
BAD = GOOD.replace("kernel_size=1)", "kernel_sze=1)")


class Client:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "resdsl", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        self.frames: queue.Queue = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    self.frames.put(None)
                    return
                if line in (b"\r\n", b"\n"):
                    break
                k, _, v = line.decode("ascii").partition(":")
                headers[k.strip().lower()] = v.strip()
            self.frames.put(json.loads(out.read(int(headers["content-length"]))))

    def send(self, method, params, request=True):
        msg = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            msg["id"] = self.next_id
        body = json.dumps(msg).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return msg.get("id")

    def expect(self, match, max_frames=20):
        for _ in range(max_frames):
            frame = self.frames.get(timeout=120)  # a guard against a hung server, not a measurement
            assert frame is not None, self.proc.stderr.read().decode()[-3000:]
            if match(frame):
                return frame
        raise AssertionError("no matching frame")

    def request(self, method, params):
        i = self.send(method, params)
        return self.expect(lambda f: f.get("id") == i and "method" not in f)

    def shutdown(self):
        """The protocol's end: shutdown answers null, exit ends the server with status 0."""
        assert self.request("shutdown", None)["result"] is None
        self.send("exit", None, request=False)
        assert self.proc.wait(timeout=120) == 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_language_server_protocol(tmp_path):
    path = tmp_path / "tiny.res"
    path.write_text(GOOD)
    uri = path.as_uri()
    c = Client()
    try:
        init = c.request("initialize", {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}})
        caps = init["result"]["capabilities"]
        assert caps["hoverProvider"] and caps["definitionProvider"] and caps["textDocumentSync"]["change"] == 1
        assert init["result"]["serverInfo"]["name"] == "resdsl"
        c.send("initialized", {}, request=False)

        diag = lambda f: f.get("method") == "textDocument/publishDiagnostics"
        c.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "resdsl", "version": 1,
                                                         "text": BAD}}, request=False)
        (d,) = c.expect(diag)["params"]["diagnostics"]
        assert d["code"] == "E013" and d["source"] == "resdsl" and d["severity"] == 1
        assert d["message"] == "conv has no argument `kernel_sze`\nhint: did you mean `kernel_size`?"
        col = BAD.splitlines()[9].index("kernel_sze")
        assert d["range"] == {"start": {"line": 9, "character": col}, "end": {"line": 9, "character": col + 12}}

        c.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                          "contentChanges": [{"text": GOOD}]}, request=False)
        assert c.expect(diag)["params"] == {"uri": uri, "diagnostics": []}

        # hover on `conv1: conv(...)` in the block: both calls, with their shapes and parameters
        h = c.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 12}})
        assert h["result"]["contents"]["value"] == (
            "**conv** (used 2 times)\n"
            f"- `a.conv1`: output `[8, 16, 16]`, {3 * 8 * 9 + 8:,} params\n"
            f"- `b.conv1`: output `[16, 16, 16]`, {8 * 16 * 9 + 16:,} params")
        h = c.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 8, "character": 8}})
        assert h["result"]["contents"]["value"] == (
            f"**unit** (block call)\n- `b`: output `[16, 16, 16]`, {8 * 16 * 9 + 16:,} params, 2 ops")
        assert c.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                "position": {"line": 4, "character": 0}})["result"] is None

        # go to definition of `unit` in `b: unit(16)`: the block's definition, line 0
        loc = c.request("textDocument/definition", {"textDocument": {"uri": uri},
                                                    "position": {"line": 8, "character": 8}})["result"]
        assert loc["uri"] == uri and loc["range"]["start"] == {"line": 0, "character": 0}

        c.shutdown()
    finally:
        c.stop()


def test_without_pygls_it_says_what_to_install(tmp_path):
    (tmp_path / "pygls.py").write_text("raise ImportError('no pygls here')\n")  # shadows the real package
    r = subprocess.run([sys.executable, "-m", "resdsl", "lsp"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 3
    assert r.stderr.strip() == ("resdsl lsp: the language server needs pygls: install pygls "
                                "(pip install 'resdsl[lsp]' or pip install pygls)")


def test_vscode_extension_starts_the_server():
    ext = ROOT / "editors" / "vscode"
    manifest = json.loads((ext / "package.json").read_text())
    assert manifest["activationEvents"] == ["onLanguage:resdsl"]
    assert manifest["contributes"]["languages"][0]["id"] == "resdsl"
    assert "vscode-languageclient" in manifest["dependencies"]
    main = (ext / manifest["main"]).read_text()
    assert 'getConfiguration("resdsl").get("server.command")' in main and "new LanguageClient(" in main
    command = manifest["contributes"]["configuration"]["properties"]["resdsl.server.command"]["default"]
    assert command == ["resdsl", "lsp"]
    from resdsl.cli import build_parser
    assert build_parser().parse_args(command[1:]).func.__module__ == "resdsl.commands.lsp"


NAMED = """network n() {
    input x: [3, H, W] where H % 8 == 4, W == H
    conv(8, 3, stride=2, padding=1)
    output y
}
"""


def test_named_sizes_over_the_protocol(tmp_path):
    """A file with named sizes: no diagnostics, hover gives the shape over the sizes (as `check` prints it)
    beside the example's; a `where` the sizes never meet is published located, with its hint."""
    path = tmp_path / "n.res"
    path.write_text(NAMED)
    uri = path.as_uri()
    c = Client()
    try:
        c.request("initialize", {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}})
        c.send("initialized", {}, request=False)
        diag = lambda f: f.get("method") == "textDocument/publishDiagnostics"
        c.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "resdsl", "version": 1,
                                                         "text": NAMED}}, request=False)
        assert c.expect(diag)["params"]["diagnostics"] == []
        h = c.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 6}})
        assert h["result"]["contents"]["value"] == \
            "**conv**\n- `conv`: output `[8, H/2, H/2]` (`[8, 114, 114]` at the example size), 224 params"
        bad = NAMED.replace("H % 8 == 4", "H % 8 == 9")
        c.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                          "contentChanges": [{"text": bad}]}, request=False)
        (d,) = c.expect(diag)["params"]["diagnostics"]
        col = bad.splitlines()[1].index("== 9") + 3  # the caret is under the remainder
        assert d["code"] == "E042" and d["range"]["start"] == {"line": 1, "character": col}
        assert d["message"] == ("this size constraint never holds: a remainder mod 8 is 0 to 7\n"
                                "hint: write a remainder from 0 to 7 (e.g. 1)")
        c.shutdown()
    finally:
        c.stop()
