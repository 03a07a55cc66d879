#!/usr/bin/env python3
"""A real Python client for test/http/refusals-reach-clients.test.ts. Reads a plan (JSON, see
clients.ts) of uploads, POSTs each one `count` times, and prints one line per try: the upload's index
and the status, or `ERR <exception>`.

    python3 upload.py urllib|requests <plan.json>
"""
import json
import sys
import urllib.error
import urllib.request

mode, plan_file = sys.argv[1:3]
with open(plan_file) as f:
    plan = json.load(f)


def pieces(body):
    for at in range(0, len(body), 65536):
        yield body[at : at + 65536]


def via_urllib(u, body):
    # An iterable body without Content-Length makes urllib send Transfer-Encoding: chunked.
    data = pieces(body) if u["chunked"] else body
    req = urllib.request.Request(u["url"], data=data, headers=u["headers"], method="POST")
    try:
        with urllib.request.urlopen(req) as res:
            res.read()
            return res.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


session = None


def via_requests(u, body):
    global session
    import requests

    if session is None:
        session = requests.Session()
    data = pieces(body) if u["chunked"] else body
    return session.post(u["url"], data=data, headers=u["headers"]).status_code


def reason(e):
    while True:
        inner = getattr(e, "reason", None) or e.__cause__ or e.__context__
        if inner is None or inner is e or not isinstance(inner, BaseException):
            break
        e = inner
    return type(e).__name__


for i, u in enumerate(plan):
    with open(u["file"], "rb") as f:
        body = f.read()
    for _ in range(u["count"]):
        try:
            status = via_urllib(u, body) if mode == "urllib" else via_requests(u, body)
            print(i, status, flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is a result to report
            print(i, "ERR", reason(e), flush=True)
