"""Checks phillymesh-chat-media-trim's guard (run by tests/mediaStorage.test.ts with python3): a local
copy is verified only when the bucket's object has its size and MD5 (single and multipart ETags),
nothing is verified on a 404, and the daily trim removes nothing before the move was verified. boto3
is replaced by stand-ins here: what is tested is this program's decision, not boto3."""
import hashlib
import importlib.util
import os
import sys
import tempfile
import types

# Stand-ins for boto3 and botocore (the real ones live in Synapse's virtualenv on the server).
class ClientError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.response = {"Error": {"Code": code}}

botocore = types.ModuleType("botocore")
botocore.config = types.SimpleNamespace(Config=lambda **kw: kw)
botocore.exceptions = types.SimpleNamespace(ClientError=ClientError)
sys.modules.update({"boto3": types.ModuleType("boto3"), "botocore": botocore, "botocore.config": botocore.config, "botocore.exceptions": botocore.exceptions})

spec = importlib.util.spec_from_file_location("trim", sys.argv[1])
trim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(trim)


class Bucket:
    def __init__(self, objects):
        self.objects = objects

    def head_object(self, Bucket, Key):
        if Key not in self.objects:
            raise ClientError("404")
        return self.objects[Key]


def check(what, got, expected):
    if got != expected:
        print("FAIL %s: got %r, expected %r" % (what, got, expected))
        sys.exit(1)
    print("ok   %s" % what)


with tempfile.TemporaryDirectory() as d:
    small = os.path.join(d, "small")
    big = os.path.join(d, "big")
    with open(small, "wb") as f:
        f.write(b"hello media")
    data = os.urandom(20 * 1024 * 1024 + 5)  # three parts of 8 MiB
    with open(big, "wb") as f:
        f.write(data)
    md5 = hashlib.md5(b"hello media").hexdigest()
    parts = [data[i : i + 8 * 1024 * 1024] for i in range(0, len(data), 8 * 1024 * 1024)]
    multipart = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    b = Bucket(
        {
            "same": {"ContentLength": 11, "ETag": '"%s"' % md5},
            "other-bytes": {"ContentLength": 11, "ETag": '"%s"' % hashlib.md5(b"hello MEDIA").hexdigest()},
            "shorter": {"ContentLength": 10, "ETag": '"%s"' % md5},
            "no-etag": {"ContentLength": 11, "ETag": ""},
            "big": {"ContentLength": len(data), "ETag": '"%s"' % multipart},
            "big-wrong": {"ContentLength": len(data), "ETag": '"%s-3"' % ("0" * 32)},
        }
    )
    check("same bytes: verified", trim.verified(b, "bkt", "same", small), True)
    check("other bytes of the same size: not verified", trim.verified(b, "bkt", "other-bytes", small), False)
    check("another size: not verified", trim.verified(b, "bkt", "shorter", small), False)
    check("no ETag: not verified", trim.verified(b, "bkt", "no-etag", small), False)
    check("not in the bucket (404): not verified", trim.verified(b, "bkt", "missing", small), False)
    check("a multipart upload of the same bytes: verified", trim.verified(b, "bkt", "big", big), True)
    check("a multipart ETag of other bytes: not verified", trim.verified(b, "bkt", "big-wrong", big), False)

    # The daily trim removes nothing before the move was verified (no moved.json in its state).
    trim.STATE_DIR = d
    trim.MOVED = os.path.join(d, "moved.json")
    calls = []
    trim.tool = lambda *a: calls.append(a)
    check("trim before a verified move: refused", trim.trim({"mediaStore": d, "cacheMaxMb": 64, "cacheDays": 30}, b), 1)
    check("...without running the tool", calls, [])
    check("both files still there", (os.path.exists(small), os.path.exists(big)), (True, True))
print("all checks passed")
