#!/usr/bin/env python3
"""Runs a known sequence of MongoDB operations with pymongo and prints, from the
driver's own command monitoring, what went over the wire: one line per
(command, collection, database, status) with its count, tab separated, status
"" for success and the server's code for errors (ok: 0, writeErrors,
writeConcernError). Handshake and monitoring commands are not published by the
driver and are not counted here.

usage: drive_pymongo.py URI [--compressors zlib] [--n N]
"""
import argparse
import collections
import sys

import pymongo
from pymongo import monitoring
from pymongo.cursor import CursorType
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, WriteConcernError
from pymongo.write_concern import WriteConcern

counts = collections.Counter()
started = {}


def collection_of(name, cmd):
    if name == "getMore":
        return cmd.get("collection", "")
    if name in ("find", "insert", "update", "delete", "aggregate", "count", "distinct",
                "findAndModify", "create", "drop", "createIndexes", "listIndexes", "killCursors"):
        v = cmd.get(name)
        return v if isinstance(v, str) else ""
    return ""


def canonical(name):
    return {"findandmodify": "findAndModify", "ismaster": "isMaster",
            "buildinfo": "buildInfo"}.get(name.lower(), name)


class Listener(monitoring.CommandListener):
    def started(self, e):
        name = canonical(e.command_name)
        started[e.request_id, e.operation_id, e.connection_id] = (
            name, collection_of(name, e.command), e.database_name)

    def _done(self, e, status):
        key = started.pop((e.request_id, e.operation_id, e.connection_id))
        counts[key + (status,)] += 1

    def succeeded(self, e):
        r = e.reply or {}
        status = ""
        if r.get("ok") == 0:  # an error the driver was told to allow (drop of a missing one)
            status = str(r.get("code", ""))
        elif r.get("writeErrors"):
            status = str(r["writeErrors"][0].get("code", ""))
        elif r.get("writeConcernError"):
            status = str(r["writeConcernError"].get("code", ""))
        self._done(e, status)

    def failed(self, e):
        self._done(e, str((e.failure or {}).get("code", "")))


def run(uri, compressors, n):
    opts = {"event_listeners": [Listener()], "serverSelectionTimeoutMS": 5000}
    if compressors:
        opts["compressors"] = compressors
    client = pymongo.MongoClient(uri, **opts)
    db = client.pstest_py
    items = db.items

    try:
        db.drop_collection("missing")  # pymongo ignores NamespaceNotFound, the wire has it
    except OperationFailure:
        pass
    db.create_collection("items")
    try:
        db.command("create", "items")  # create_collection would not even send it
    except OperationFailure:
        pass

    for i in range(n):
        items.insert_one({"_id": i, "k": i % 5, "v": "x" * 16})
    items.insert_many([{"_id": n + i, "k": i % 5} for i in range(3 * n)])
    try:
        items.insert_one({"_id": 0})
    except DuplicateKeyError:
        pass
    try:
        items.insert_many([{"_id": 1}, {"_id": 10**6}, {"_id": 2}], ordered=False)
    except BulkWriteError:
        pass
    items.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": 10**6 + 1})

    got = sum(1 for _ in items.find({}, batch_size=7))
    assert got == 4 * n + 2, got
    got = sum(1 for _ in items.find({"k": 3}).batch_size(3))
    got = sum(1 for _ in items.find({}, batch_size=25, cursor_type=CursorType.EXHAUST))
    assert got == 4 * n + 2, got

    items.update_one({"_id": 1}, {"$set": {"v": "y"}})
    items.update_many({"k": 2}, {"$inc": {"c": 1}})
    items.replace_one({"_id": 3}, {"k": 3, "v": "z"})
    try:
        items.with_options(write_concern=WriteConcern(w=3)).update_one({"_id": 4}, {"$set": {"v": 1}})
    except WriteConcernError:
        pass

    items.delete_one({"_id": 5})
    items.delete_many({"k": 4})

    list(items.aggregate([{"$match": {"k": 1}}, {"$group": {"_id": "$k", "n": {"$sum": 1}}}]))
    list(items.aggregate([{"$match": {}}], batchSize=10))
    try:
        list(items.aggregate([{"$bogusStage": {}}]))
    except OperationFailure:
        pass
    items.count_documents({"k": 0})
    items.estimated_document_count()
    items.distinct("k")
    items.find_one_and_update({"_id": 6}, {"$set": {"v": "w"}})
    try:
        db.command("noSuchCommand")
    except OperationFailure:
        pass
    db.command("ping")
    db.drop_collection("items")
    client.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--compressors", default="")
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    run(args.uri, args.compressors, args.n)
    for (name, coll, db, status), c in sorted(counts.items()):
        print("%s\t%s\t%s\t%s\t%d" % (name, coll, db, status, c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
