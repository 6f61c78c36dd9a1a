#!/usr/bin/env python3
"""A MongoDB test responder: answers real drivers the way a mongod 4.4 would.

There is no MongoDB server on the test machines, so the integration tests run
this instead. It speaks the wire protocol (OP_MSG with its flag bits and
document sequences, the legacy OP_QUERY/OP_REPLY handshake and exhaust
cursors, OP_GET_MORE, OP_KILL_CURSORS, OP_COMPRESSED with noop, zlib and, where
Debian's python3-snappy is installed, snappy) and
keeps collections in memory with a unique _id, so that the replies carry what
a real server's would: cursors that need getMore, duplicate-key writeErrors
(11000), writeConcernError (100) for unsatisfiable write concerns, ok: 0 with
codes for unknown commands (59), missing namespaces (26), existing ones (48),
unknown pipeline stages (40324), lost cursors (43). Awaitable hello with
exhaustAllowed streams replies with moreToCome, as monitors expect.

usage: responder.py --port PORT | --unix PATH [--max-wire 9]
Prints "ready" on stdout once listening.
"""
import argparse
import asyncio
import os
import struct
import sys
import time
import zlib

try:
    import snappy  # python3-snappy: MongoDB's snappy is its raw (block) format
except ImportError:
    snappy = None

import bson
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.son import SON

OP_REPLY, OP_UPDATE, OP_INSERT, OP_QUERY = 1, 2001, 2002, 2004
OP_GET_MORE, OP_DELETE, OP_KILL_CURSORS = 2005, 2006, 2007
OP_COMPRESSED, OP_MSG = 2012, 2013
MORE_TO_COME, EXHAUST_ALLOWED, CHECKSUM = 1 << 1, 1 << 16, 1 << 0
DEFAULT_BATCH = 101

_ids = iter(range(1, 1 << 31))


class CommandError(Exception):
    def __init__(self, code, name, msg):
        super().__init__(msg)
        self.code, self.name, self.msg = code, name, msg


class Store:
    def __init__(self):
        self.colls = {}  # "db.coll" -> list of documents
        self.cursors = {}  # id -> [ns, remaining documents]
        self.next_cursor = 7000

    def coll(self, ns, create=True):
        if ns not in self.colls and create:
            self.colls[ns] = []
        return self.colls.get(ns)

    def open_cursor(self, ns, docs, batch):
        first, rest = docs[:batch], docs[batch:]
        if not rest:
            return first, 0
        self.next_cursor += 1
        self.cursors[self.next_cursor] = [ns, rest]
        return first, self.next_cursor

    def next_batch(self, cid, batch):
        if cid not in self.cursors:
            raise CommandError(43, "CursorNotFound", "cursor id %d not found" % cid)
        ns, rest = self.cursors[cid]
        out, rest = rest[:batch], rest[batch:]
        if rest:
            self.cursors[cid][1] = rest
            return ns, out, cid
        del self.cursors[cid]
        return ns, out, 0


def matches(doc, flt):
    for k, cond in flt.items():
        v = doc.get(k)
        if isinstance(cond, dict) and cond and all(str(x).startswith("$") for x in cond):
            for op, arg in cond.items():
                ok = {"$eq": lambda: v == arg, "$ne": lambda: v != arg,
                      "$gt": lambda: v is not None and v > arg,
                      "$gte": lambda: v is not None and v >= arg,
                      "$lt": lambda: v is not None and v < arg,
                      "$lte": lambda: v is not None and v <= arg,
                      "$in": lambda: v in arg}.get(op)
                if ok is None:
                    raise CommandError(2, "BadValue", "unknown operator: %s" % op)
                if not ok():
                    return False
        elif v != cond:
            return False
    return True


def apply_update(doc, upd):
    if not any(k.startswith("$") for k in upd):
        new = {"_id": doc["_id"]}
        new.update(upd)
        return new
    new = dict(doc)
    for op, fields in upd.items():
        for k, arg in fields.items():
            if op == "$set":
                new[k] = arg
            elif op == "$inc":
                new[k] = new.get(k, 0) + arg
            elif op == "$unset":
                new.pop(k, None)
            else:
                raise CommandError(9, "FailedToParse", "Unknown modifier: %s" % op)
    return new


def dup_error(ns, index, key):
    db, coll = ns.split(".", 1)
    return {"index": index, "code": 11000, "keyPattern": {"_id": 1}, "keyValue": {"_id": key},
            "errmsg": "E11000 duplicate key error collection: %s.%s index: _id_ dup key: { _id: %r }"
                      % (db, coll, key)}


def write_concern_error(cmd):
    w = (cmd.get("writeConcern") or {}).get("w")
    if isinstance(w, int) and w > 1:
        return {"code": 100, "codeName": "UnsatisfiableWriteConcern",
                "errmsg": "Not enough data-bearing nodes", "errInfo": {}}
    return None


class Server:
    def __init__(self, max_wire):
        self.store = Store()
        self.max_wire = max_wire
        self.conn_ids = iter(range(1, 1 << 31))
        self.topology = {"processId": ObjectId(), "counter": Int64(0)}

    # ---- commands ------------------------------------------------------------------------
    def hello(self, cmd, conn):
        if "compression" in cmd and conn.compressor is None:
            known = ("snappy", "zlib", "noop") if snappy else ("zlib", "noop")
            wanted = [c for c in cmd["compression"] if c in known]
            conn.compressor = wanted[0] if wanted else ""
            if conn.compressor:
                print(f"connection {conn.id}: {conn.compressor}", flush=True)
        out = SON([("helloOk", True), ("ismaster", True), ("topologyVersion", self.topology),
                   ("maxBsonObjectSize", 16777216), ("maxMessageSizeBytes", 48000000),
                   ("maxWriteBatchSize", 100000), ("localTime", time.time_ns() // 10**6),
                   ("logicalSessionTimeoutMinutes", 30), ("connectionId", conn.id),
                   ("minWireVersion", 0), ("maxWireVersion", self.max_wire),
                   ("readOnly", False)])
        if conn.compressor:
            out["compression"] = [conn.compressor]
        if "hello" in cmd:
            out["isWritablePrimary"] = True
            del out["ismaster"]
        out["ok"] = 1.0
        return out

    def run(self, cmd, db, conn):
        name = next(iter(cmd))
        low = name.lower()
        st = self.store
        if low in ("ismaster", "hello"):
            return self.hello(cmd, conn)
        if low == "ping":
            return {"ok": 1.0}
        if low == "buildinfo":
            return {"version": "4.4.29", "versionArray": [4, 4, 29, 0], "bits": 64,
                    "maxBsonObjectSize": 16777216, "ok": 1.0}
        if low in ("endsessions", "killcursors"):
            killed = []
            for cid in cmd.get("cursors", []):
                if st.cursors.pop(int(cid), None) is not None:
                    killed.append(cid)
            return {"cursorsKilled": killed, "cursorsNotFound": [], "cursorsAlive": [],
                    "cursorsUnknown": [], "ok": 1.0} if low == "killcursors" else {"ok": 1.0}
        ns = "%s.%s" % (db, cmd[name]) if isinstance(cmd[name], str) else None
        if name == "insert":
            return self.insert(ns, cmd.get("documents", []), cmd)
        if name == "find":
            docs = [d for d in st.coll(ns, False) or [] if matches(d, cmd.get("filter", {}))]
            docs = docs[cmd.get("skip", 0):]
            if cmd.get("limit"):
                docs = docs[:abs(cmd["limit"])]
            batch = cmd.get("batchSize", DEFAULT_BATCH)
            first, cid = st.open_cursor(ns, docs, batch)
            return {"cursor": {"firstBatch": first, "id": Int64(cid), "ns": ns}, "ok": 1.0}
        if name == "getMore":
            ns2, out, cid = st.next_batch(int(cmd["getMore"]), cmd.get("batchSize", DEFAULT_BATCH))
            return {"cursor": {"nextBatch": out, "id": Int64(cid), "ns": ns2}, "ok": 1.0}
        if name == "update":
            return self.update(ns, cmd.get("updates", []), cmd)
        if name == "delete":
            return self.delete(ns, cmd.get("deletes", []), cmd)
        if name == "aggregate":
            return self.aggregate(ns, cmd)
        if name == "count":
            docs = [d for d in st.coll(ns, False) or [] if matches(d, cmd.get("query") or {})]
            return {"n": len(docs), "ok": 1.0}
        if name == "distinct":
            vals = []
            for d in st.coll(ns, False) or []:
                if matches(d, cmd.get("query") or {}) and cmd["key"] in d and d[cmd["key"]] not in vals:
                    vals.append(d[cmd["key"]])
            return {"values": vals, "ok": 1.0}
        if low == "findandmodify":
            return self.find_and_modify(ns, cmd)
        if name == "create":
            if ns in st.colls:
                raise CommandError(48, "NamespaceExists", "Collection already exists. NS: " + ns)
            st.colls[ns] = []
            return {"ok": 1.0}
        if name == "drop":
            if ns not in st.colls:
                raise CommandError(26, "NamespaceNotFound", "ns not found")
            del st.colls[ns]
            return {"nIndexesWas": 1, "ns": ns, "ok": 1.0}
        if name == "createIndexes":
            st.coll(ns)
            return {"createdCollectionAutomatically": False, "numIndexesBefore": 1,
                    "numIndexesAfter": 2, "ok": 1.0}
        if name == "listCollections":
            names = [n.split(".", 1)[1] for n in st.colls if n.startswith(db + ".")]
            first = [{"name": n, "type": "collection", "options": {}} for n in names]
            return {"cursor": {"firstBatch": first, "id": Int64(0), "ns": db + ".$cmd.listCollections"},
                    "ok": 1.0}
        if name == "dropDatabase":
            for n in [n for n in st.colls if n.startswith(db + ".")]:
                del st.colls[n]
            return {"dropped": db, "ok": 1.0}
        raise CommandError(59, "CommandNotFound", "no such command: '%s'" % name)

    def insert(self, ns, docs, cmd):
        coll = self.store.coll(ns)
        errors, n = [], 0
        ordered = cmd.get("ordered", True)
        for i, d in enumerate(docs):
            if "_id" not in d:
                d = dict(d, _id=ObjectId())
            if any(x["_id"] == d["_id"] for x in coll):
                errors.append(dup_error(ns, i, d["_id"]))
                if ordered:
                    break
                continue
            coll.append(d)
            n += 1
        return self.write_reply(n, errors, cmd)

    def write_reply(self, n, errors, cmd, extra=None):
        out = SON([("n", n)])
        if extra:
            out.update(extra)
        if errors:
            out["writeErrors"] = errors
        wce = write_concern_error(cmd)
        if wce:
            out["writeConcernError"] = wce
        out["ok"] = 1.0
        return out

    def update(self, ns, updates, cmd):
        coll = self.store.coll(ns)
        n = modified = 0
        upserted = []
        for i, u in enumerate(updates):
            hit = False
            for j, d in enumerate(coll):
                if matches(d, u.get("q", {})):
                    new = apply_update(d, u["u"])
                    modified += new != d
                    coll[j] = new
                    n += 1
                    hit = True
                    if not u.get("multi"):
                        break
            if not hit and u.get("upsert"):
                d = apply_update({"_id": ObjectId()}, u["u"])
                coll.append(d)
                upserted.append({"index": i, "_id": d["_id"]})
                n += 1
        extra = {"nModified": modified}
        if upserted:
            extra["upserted"] = upserted
        return self.write_reply(n, [], cmd, extra)

    def delete(self, ns, deletes, cmd):
        coll = self.store.coll(ns)
        n = 0
        for dl in deletes:
            limit, keep, removed = dl.get("limit", 0), [], 0
            for d in coll:
                if (limit == 0 or removed < 1) and matches(d, dl.get("q", {})):
                    removed += 1
                    continue
                keep.append(d)
            coll[:] = keep
            n += removed
        return self.write_reply(n, [], cmd)

    def find_and_modify(self, ns, cmd):
        coll = self.store.coll(ns)
        for j, d in enumerate(coll):
            if matches(d, cmd.get("query", {})):
                if cmd.get("remove"):
                    del coll[j]
                    return {"lastErrorObject": {"n": 1}, "value": d, "ok": 1.0}
                new = apply_update(d, cmd["update"])
                coll[j] = new
                return {"lastErrorObject": {"n": 1, "updatedExisting": True},
                        "value": new if cmd.get("new") else d, "ok": 1.0}
        return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None, "ok": 1.0}

    def aggregate(self, ns, cmd):
        docs = list(self.store.coll(ns, False) or [])
        for stage in cmd.get("pipeline", []):
            op, arg = next(iter(stage.items()))
            if op == "$match":
                docs = [d for d in docs if matches(d, arg)]
            elif op == "$limit":
                docs = docs[:arg]
            elif op == "$skip":
                docs = docs[arg:]
            elif op == "$sort":
                for k, direction in reversed(list(arg.items())):
                    docs.sort(key=lambda d: d.get(k), reverse=direction < 0)
            elif op == "$count":
                docs = [{arg: len(docs)}]
            elif op == "$group":
                groups = {}
                key = arg["_id"]
                for d in docs:
                    g = d.get(key[1:]) if isinstance(key, str) else key
                    out = groups.setdefault(g, {"_id": g})
                    for f, acc in arg.items():
                        if f == "_id":
                            continue
                        v = acc["$sum"]
                        out[f] = out.get(f, 0) + (d.get(v[1:], 0) if isinstance(v, str) else v)
                docs = list(groups.values())
            else:
                raise CommandError(40324, "Location40324",
                                   "Unrecognized pipeline stage name: '%s'" % op)
        batch = (cmd.get("cursor") or {}).get("batchSize", DEFAULT_BATCH)
        first, cid = self.store.open_cursor(ns, docs, batch)
        return {"cursor": {"firstBatch": first, "id": Int64(cid), "ns": ns}, "ok": 1.0}

    def command(self, cmd, db, conn):
        try:
            return self.run(cmd, db, conn)
        except CommandError as e:
            return SON([("ok", 0.0), ("errmsg", e.msg), ("code", e.code), ("codeName", e.name)])


class Conn:
    def __init__(self, server, reader, writer):
        self.server, self.reader, self.writer = server, reader, writer
        self.id = next(server.conn_ids)
        self.compressor = None

    def send(self, opcode, body, response_to, compress):
        rid = next(_ids)
        if compress and self.compressor:
            if self.compressor == "zlib":
                comp_id, data = 2, zlib.compress(body)
            elif self.compressor == "snappy":
                comp_id, data = 1, snappy.compress(body)
            else:
                comp_id, data = 0, body
            body = struct.pack("<iiB", opcode, len(body), comp_id) + data
            opcode = OP_COMPRESSED
        self.writer.write(struct.pack("<iiii", 16 + len(body), rid, response_to, opcode) + body)
        return rid

    def send_msg(self, doc, response_to, compress, flags=0):
        return self.send(OP_MSG, struct.pack("<IB", flags, 0) + bson.encode(doc), response_to, compress)

    def send_reply(self, docs, response_to, compress, cursor_id=0, flags=0, start=0):
        body = struct.pack("<iqii", flags, cursor_id, start, len(docs)) + b"".join(bson.encode(d) for d in docs)
        return self.send(OP_REPLY, body, response_to, compress)

    async def serve(self):
        try:
            while True:
                head = await self.reader.readexactly(16)
                length, rid, _, opcode = struct.unpack("<iiii", head)
                body = await self.reader.readexactly(length - 16)
                compressed = False
                if opcode == OP_COMPRESSED:
                    opcode, size, comp = struct.unpack_from("<iiB", body)
                    if comp == 2:
                        body = zlib.decompress(body[9:])
                    elif comp == 1:
                        body = snappy.decompress(body[9:])
                    else:
                        body = body[9:]
                    compressed = True
                await self.handle(opcode, rid, body, compressed)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writer.close()

    async def handle(self, opcode, rid, body, compressed):
        if opcode == OP_MSG:
            await self.handle_msg(rid, body, compressed)
        elif opcode == OP_QUERY:
            self.handle_query(rid, body, compressed)
        elif opcode == OP_GET_MORE:
            _, ns_end = 4, body.index(b"\0", 4)
            n, cid = struct.unpack_from("<iq", body, ns_end + 1)
            try:
                _, docs, cid = self.server.store.next_batch(cid, n or DEFAULT_BATCH)
                self.send_reply(docs, rid, compressed, cid)
            except CommandError:
                self.send_reply([], rid, compressed, 0, flags=1)  # CursorNotFound
        elif opcode == OP_KILL_CURSORS:
            n = struct.unpack_from("<i", body, 4)[0]
            for cid in struct.unpack_from("<%dq" % n, body, 8):
                self.server.store.cursors.pop(cid, None)
        else:
            raise ConnectionError("opcode %d not served" % opcode)

    async def handle_msg(self, rid, body, compressed):
        flags = struct.unpack_from("<I", body)[0]
        end = len(body) - (4 if flags & CHECKSUM else 0)
        pos, cmd, seqs = 4, None, {}
        while pos < end:
            kind = body[pos]
            pos += 1
            if kind == 0:
                size = struct.unpack_from("<i", body, pos)[0]
                cmd = bson.decode(body[pos:pos + size], codec_options=bson.CodecOptions(document_class=SON))
                pos += size
            else:
                size = struct.unpack_from("<i", body, pos)[0]
                ident_end = body.index(b"\0", pos + 4)
                ident = body[pos + 4:ident_end].decode()
                seqs[ident] = bson.decode_all(body[ident_end + 1:pos + size],
                                              bson.CodecOptions(document_class=SON))
                pos += size
        cmd.update(seqs)
        db = cmd.get("$db", "admin")
        reply = self.server.command(cmd, db, self)
        if flags & MORE_TO_COME:
            return  # unacknowledged: the client wants no reply
        name = next(iter(cmd)).lower()
        if name == "getmore" and flags & EXHAUST_ALLOWED:
            # Exhaust: each batch follows unasked, moreToCome until the cursor is done.
            while reply.get("ok") and reply["cursor"]["id"]:
                rid = self.send_msg(reply, rid, compressed, MORE_TO_COME)
                await self.writer.drain()
                reply = self.server.command(cmd, db, self)
            self.send_msg(reply, rid, compressed)
            return
        awaitable = name in ("hello", "ismaster") and "topologyVersion" in cmd and "maxAwaitTimeMS" in cmd
        if not awaitable:
            self.send_msg(reply, rid, compressed)
            return
        # Awaitable hello: nothing changes here, so the answer comes after the wait; with
        # exhaustAllowed it keeps coming, each reply answering the previous one.
        wait = min(cmd["maxAwaitTimeMS"], 500) / 1000.0
        while True:
            await asyncio.sleep(wait)
            more = bool(flags & EXHAUST_ALLOWED)
            rid = self.send_msg(self.server.command(cmd, db, self), rid, compressed,
                                MORE_TO_COME if more else 0)
            await self.writer.drain()
            if not more:
                return

    def handle_query(self, rid, body, compressed):
        flags = struct.unpack_from("<i", body)[0]
        ns_end = body.index(b"\0", 4)
        ns = body[4:ns_end].decode()
        skip, n = struct.unpack_from("<ii", body, ns_end + 1)
        q = bson.decode(body[ns_end + 9:ns_end + 9 + struct.unpack_from("<i", body, ns_end + 9)[0]],
                        codec_options=bson.CodecOptions(document_class=SON))
        db, coll = ns.split(".", 1)
        if coll == "$cmd":
            if "$query" in q:
                q = q["$query"]
            self.send_reply([self.server.command(q, db, self)], rid, compressed)
            return
        flt = q.get("$query", q) if "$query" in q else q
        st = self.server.store
        docs = [d for d in st.coll(ns, False) or [] if matches(d, flt)][skip:]
        batch = abs(n) if n else DEFAULT_BATCH
        first, cid = st.open_cursor(ns, docs, batch)
        start = len(first)
        rid = self.send_reply(first, rid, compressed, cid)
        # Exhaust (flag bit 6): the rest of the cursor follows unasked.
        while flags & (1 << 6) and cid:
            _, out, cid = st.next_batch(cid, batch)
            rid = self.send_reply(out, rid, compressed, cid, start=start)
            start += len(out)


async def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--port", type=int)
    g.add_argument("--unix")
    ap.add_argument("--max-wire", type=int, default=9)
    args = ap.parse_args()
    server = Server(args.max_wire)

    async def accept(reader, writer):
        await Conn(server, reader, writer).serve()

    if args.port:
        srv = await asyncio.start_server(accept, "127.0.0.1", args.port)
    else:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        srv = await asyncio.start_unix_server(accept, args.unix)
        os.chmod(args.unix, 0o777)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
