"""What the official Kubernetes Python client does against a skiff cluster.

Run by `crates/skiff/tests/clients.rs` against a local cluster (KUBECONFIG set, the
namespace in SUITE_NAMESPACE): exec with stdin over WebSocket, port-forward, watch with
bookmarks, server-side apply, a metadata-only PATCH, eviction and the metrics API. Each
check prints `ok <name>`; the first failure ends the run with a traceback.
"""

import json
import os
import socket
import sys
import time

from kubernetes import client, config, watch
from kubernetes.stream import portforward, stream

NS = os.environ["SUITE_NAMESPACE"]
PAGE = os.environ["SUITE_PAGE"]


def wait(what, check, timeout=90):
    """Polls `check` until it returns something true, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def pod(name, image, command=None):
    container = client.V1Container(name="c", image=image, command=command)
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"suite": "python"}),
        spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=1),
    )


def ready(v1, name):
    p = v1.read_namespaced_pod(name, NS)
    conds = (p.status.conditions or []) if p.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conds)


def setup(v1):
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    v1.create_namespaced_pod(NS, pod("shell", "busybox", ["sleep", "3600"]))
    v1.create_namespaced_pod(NS, pod("web", "httpd"))
    for name in ("shell", "web"):
        wait(f"pod {name} Ready", lambda: ready(v1, name))


def exec_with_stdin(v1):
    resp = stream(
        v1.connect_get_namespaced_pod_exec, "shell", NS,
        command=["sh", "-c", "read line; echo got:$line; echo oops >&2; exit 3"],
        stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False,
    )
    resp.write_stdin("hello\n")
    out, err = "", ""
    deadline = time.monotonic() + 30
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        out += resp.read_stdout() if resp.peek_stdout() else ""
        err += resp.read_stderr() if resp.peek_stderr() else ""
    resp.close()
    assert out == "got:hello\n", (out, err)
    assert err == "oops\n", (out, err)
    assert resp.returncode == 3, resp.returncode


def exec_output(v1):
    out = stream(
        v1.connect_get_namespaced_pod_exec, "shell", NS,
        command=["echo", "hi"], stdin=False, stdout=True, stderr=True, tty=False,
    )
    assert out == "hi\n", repr(out)


def port_forward(v1):
    pf = portforward(v1.connect_get_namespaced_pod_portforward, "web", NS, ports="80")
    sock = pf.socket(80)
    sock.setblocking(True)
    sock.settimeout(30)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert pf.error(80) is None, pf.error(80)
    text = reply.decode()
    assert text.startswith("HTTP/1."), text
    assert PAGE in text, text


def watch_with_bookmarks(v1):
    v1.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="before"), data={"a": "1"})
    )
    w = watch.Watch()
    seen, bookmark = [], None
    # Initial events then the bookmark that ends them (kube's watch-list), then a change.
    for event in w.stream(
        v1.list_namespaced_config_map, NS,
        allow_watch_bookmarks=True, send_initial_events=True,
        resource_version_match="NotOlderThan", timeout_seconds=30,
    ):
        if event["type"] == "BOOKMARK":
            bookmark = event["raw_object"]["metadata"]
            v1.create_namespaced_config_map(
                NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after"))
            )
            continue
        seen.append((event["type"], event["object"].metadata.name))
        if ("ADDED", "after") in seen:
            w.stop()
    assert ("ADDED", "before") in seen, seen
    assert bookmark is not None, "no bookmark"
    assert bookmark["annotations"]["k8s.io/initial-events-end"] == "true", bookmark
    assert seen.index(("ADDED", "before")) < seen.index(("ADDED", "after")), seen


def server_side_apply(v1):
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "applied"}, "data": {"k": "v"}}
    cm = v1.patch_namespaced_config_map(
        "applied", NS, body, field_manager="python-suite", force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert cm.data == {"k": "v"}, cm.data
    managers = [(m.manager, m.operation) for m in cm.metadata.managed_fields]
    assert ("python-suite", "Apply") in managers, managers
    # A second manager may not take the field without force: 409 Conflict.
    body["data"]["k"] = "w"
    try:
        v1.patch_namespaced_config_map(
            "applied", NS, body, field_manager="other",
            _content_type="application/apply-patch+yaml",
        )
        raise AssertionError("a conflicting apply succeeded")
    except client.ApiException as e:
        assert e.status == 409, e
        assert "conflict" in json.loads(e.body)["message"].lower(), e.body


def metadata_only_patch(api):
    path = f"/api/v1/namespaces/{NS}/configmaps/applied"
    method, url, headers, body, _ = api.param_serialize(
        "PATCH", path,
        header_params={
            "Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            "Content-Type": "application/merge-patch+json",
        },
        body={"metadata": {"labels": {"patched": "yes"}}},
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(method, url, header_params=headers, body=body)
    resp.read()
    assert resp.status == 200, (resp.status, resp.data)
    obj = json.loads(resp.data)
    assert obj["kind"] == "PartialObjectMetadata", obj
    assert obj["apiVersion"] == "meta.k8s.io/v1", obj
    assert obj["metadata"]["labels"] == {"patched": "yes"}, obj
    assert "data" not in obj, obj


def eviction(v1):
    v1.create_namespaced_pod_eviction(
        "shell", NS, client.V1Eviction(metadata=client.V1ObjectMeta(name="shell", namespace=NS))
    )

    def gone():
        try:
            p = v1.read_namespaced_pod("shell", NS)
            return p.metadata.deletion_timestamp is not None
        except client.ApiException as e:
            return e.status == 404
    wait("the evicted pod deleted", gone)


def main():
    config.load_kube_config()
    api = client.ApiClient()
    v1 = client.CoreV1Api(api)
    version = client.VersionApi(api).get_code()
    print(f"server {version.git_version}", flush=True)
    checks = [
        ("setup", lambda: setup(v1)),
        ("exec_with_stdin", lambda: exec_with_stdin(v1)),
        ("exec_output", lambda: exec_output(v1)),
        ("port_forward", lambda: port_forward(v1)),
        ("watch_with_bookmarks", lambda: watch_with_bookmarks(v1)),
        ("server_side_apply", lambda: server_side_apply(v1)),
        ("metadata_only_patch", lambda: metadata_only_patch(api)),
        ("eviction", lambda: eviction(v1)),
    ]
    only = sys.argv[1:]
    for name, check in checks:
        if only and name != "setup" and name not in only:
            continue
        check()
        print(f"ok {name}", flush=True)


if __name__ == "__main__":
    main()
