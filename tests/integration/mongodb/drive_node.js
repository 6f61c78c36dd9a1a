#!/usr/bin/env node
// Runs a known sequence of MongoDB operations with the official Node.js driver and
// prints, from the driver's own command monitoring, what went over the wire: one line
// per (command, collection, database, status) with its count, tab separated, status ""
// for success and the server's code for errors (ok: 0, writeErrors, writeConcernError).
// Handshake and monitoring commands are not published by the driver and are not
// counted here, nor is the endSessions of close(), whose reply the driver never reads.
//
// usage: node drive_node.js URI [N [LINGER_MS]]
// LINGER_MS: stay connected that long before closing, for the monitor's awaitable hello
// (exhaustAllowed: replies streamed with moreToCome).
'use strict';
const path = require('path');
const { MongoClient } = require(path.join(__dirname, 'node_modules', 'mongodb'));

const counts = new Map();
const started = new Map();
const firstValue = new Set(['find', 'insert', 'update', 'delete', 'aggregate', 'count', 'distinct',
  'findAndModify', 'create', 'drop', 'createIndexes', 'listIndexes', 'killCursors']);

function collectionOf(name, cmd) {
  if (name === 'getMore') return typeof cmd.collection === 'string' ? cmd.collection : '';
  if (firstValue.has(name)) return typeof cmd[name] === 'string' ? cmd[name] : '';
  return '';
}

function done(e, status) {
  const key = started.get(e.requestId);
  if (key === undefined) throw new Error('no started event for request ' + e.requestId);
  started.delete(e.requestId);
  const row = key + '\t' + status;
  counts.set(row, (counts.get(row) || 0) + 1);
}

function statusOf(r) {
  if (!r) return '';
  if (r.ok === 0) return r.code === undefined ? '' : String(r.code);
  if (r.writeErrors && r.writeErrors.length) return String(r.writeErrors[0].code);
  if (r.writeConcernError) return String(r.writeConcernError.code);
  return '';
}

async function ignore(p) {
  try {
    await p;
  } catch (e) {
    // the error is on the wire and in the monitoring events: that is what is counted
  }
}

async function main() {
  const uri = process.argv[2];
  const n = Number(process.argv[3] || 20);
  const client = new MongoClient(uri, { monitorCommands: true, serverSelectionTimeoutMS: 5000 });
  client.on('commandStarted', (e) => {
    started.set(e.requestId, [e.commandName, collectionOf(e.commandName, e.command), e.databaseName].join('\t'));
  });
  client.on('commandSucceeded', (e) => {
    // close() sends endSessions with noResponse: the driver never reads that reply, and
    // publishes success anyway. On the wire the client never saw it answered: not counted.
    if (e.commandName === 'endSessions' && e.reply === undefined) {
      started.delete(e.requestId);
      process.stderr.write('endSessions sent without reading its reply (close)\n');
      return;
    }
    done(e, statusOf(e.reply));
  });
  client.on('commandFailed', (e) => done(e, statusOf(e.failure && e.failure.errorResponse)));
  await client.connect();
  const db = client.db('pstest_node');
  const items = db.collection('items');

  await ignore(db.command({ drop: 'missing' }));
  await db.command({ create: 'items' });
  await ignore(db.command({ create: 'items' }));
  for (let i = 0; i < n; i++) await items.insertOne({ _id: i, k: i % 5 });
  const many = [];
  for (let i = 0; i < 3 * n; i++) many.push({ _id: n + i, k: i % 5 });
  await items.insertMany(many);
  await ignore(items.insertOne({ _id: 0 }));
  await ignore(items.insertMany([{ _id: 1 }, { _id: 1000000 }, { _id: 2 }], { ordered: false }));
  await items.insertOne({ _id: 1000001 }, { writeConcern: { w: 0 } });

  let got = (await items.find({}, { batchSize: 7 }).toArray()).length;
  if (got !== 4 * n + 2) throw new Error('find returned ' + got);
  await items.find({ k: 3 }, { batchSize: 3 }).toArray();

  await items.updateOne({ _id: 1 }, { $set: { v: 'y' } });
  await items.updateMany({ k: 2 }, { $inc: { c: 1 } });
  await items.replaceOne({ _id: 3 }, { k: 3, v: 'z' });
  await ignore(items.updateOne({ _id: 4 }, { $set: { v: 1 } }, { writeConcern: { w: 3 } }));
  await items.deleteOne({ _id: 5 });
  await items.deleteMany({ k: 4 });

  await items.aggregate([{ $match: { k: 1 } }, { $group: { _id: '$k', n: { $sum: 1 } } }]).toArray();
  await items.aggregate([{ $match: {} }], { batchSize: 10 }).toArray();
  await ignore(items.aggregate([{ $bogusStage: {} }]).toArray());
  await items.countDocuments({ k: 0 });
  await items.estimatedDocumentCount();
  await items.distinct('k');
  await items.findOneAndUpdate({ _id: 6 }, { $set: { v: 'w' } });
  await ignore(db.command({ noSuchCommand: 1 }));
  await db.command({ ping: 1 });
  await items.drop();
  const linger = Number(process.argv[4] || 0);
  if (linger) await new Promise((resolve) => setTimeout(resolve, linger));
  await client.close();

  for (const [row, c] of [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    process.stdout.write(row + '\t' + c + '\n');
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
