// Core node scenario with mongosh 2.x: auth, insert, find, db.currentOp(), db.killOp() ending a sleep.
// Usage: mongosh <uri> --quiet --file node_mongosh.js  (prints "OK mongosh" on success)
const d = db.getSiblingDB('shclients');
d.items.drop();
d.items.insertMany([{ _id: 1, v: 'a' }, { _id: 2, v: 'b' }, { _id: 3, v: 'c' }]);
const found = d.items.find({ _id: { $gte: 2 } }).sort({ _id: 1 }).toArray();
if (found.length !== 2 || found[0].v !== 'b') throw new Error('find returned ' + JSON.stringify(found));

// The victim runs through the underlying Node.js driver: its Promise is not implicitly awaited by
// mongosh, so the sleep runs on another pooled connection while this shell looks for it and kills it.
const driver = db.getMongo()._serviceProvider.mongoClient;
let victimCode = null;
driver.db('admin').command({ sleep: 1, millis: 30000 })
  .then((r) => { victimCode = r.code === undefined ? 0 : r.code; }, (e) => { victimCode = e.code; });
let opid = null;
for (let i = 0; i < 500 && opid === null; i++) {
  const ops = db.currentOp({ 'command.sleep': { $exists: true } }).inprog;
  if (ops.length > 0) opid = ops[0].opid;
  else sleep(10);
}
if (opid === null) throw new Error('sleep op not found in db.currentOp()');
const k = db.killOp(opid);
if (k.info !== 'attempting to kill op') throw new Error('killOp reply ' + JSON.stringify(k));
// mongosh's sleep() is implicitly awaited, so the driver's callbacks run while we wait.
for (let i = 0; i < 1000 && victimCode === null; i++) sleep(10);
const code = victimCode;
if (code !== 11601) throw new Error('victim got ' + code);
print('OK mongosh ' + opid + ' ' + code);
