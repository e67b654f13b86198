const test = require("node:test");
const assert = require("node:assert");
const { Product } = require("../src/models/product");
const { Order } = require("../src/models/order");

test("placing an order reserves stock", () => {
  const p = Product.create({ name: "Mug", priceCents: 1200, stock: 3 });
  const order = Order.place("c1", [{ productId: p.id, quantity: 2 }]);
  assert.strictEqual(order.totalCents, 2400);
  assert.strictEqual(Product.find(p.id).stock, 1);
});

test("cancelling an order releases stock", () => {
  const p = Product.create({ name: "Teapot", priceCents: 3500, stock: 1 });
  const order = Order.place("c2", [{ productId: p.id, quantity: 1 }]);
  Order.cancel(order.id);
  assert.strictEqual(Product.find(p.id).stock, 1);
});
