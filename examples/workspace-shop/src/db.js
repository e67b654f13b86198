// An in-memory store standing in for a database.
const tables = { products: new Map(), orders: new Map(), carts: new Map() };
let nextId = 1;

function insert(table, row) {
  const id = nextId++;
  const stored = { ...row, id };
  tables[table].set(id, stored);
  return stored;
}

function findById(table, id) {
  return tables[table].get(Number(id)) || null;
}

function all(table) {
  return [...tables[table].values()];
}

function update(table, id, fields) {
  const row = findById(table, id);
  if (!row) return null;
  Object.assign(row, fields);
  return row;
}

module.exports = { insert, findById, all, update, tables };
