const express = require("express");
const db = require("../db");

const cartRouter = express.Router();

function cartOf(customerId) {
  if (!db.tables.carts.has(customerId)) db.tables.carts.set(customerId, []);
  return db.tables.carts.get(customerId);
}

cartRouter.get("/:customerId", (req, res) => {
  res.json(cartOf(req.params.customerId));
});

cartRouter.post("/:customerId/items", (req, res) => {
  const cart = cartOf(req.params.customerId);
  cart.push({ productId: req.body.productId, quantity: req.body.quantity || 1 });
  res.status(201).json(cart);
});

cartRouter.delete("/:customerId", (req, res) => {
  db.tables.carts.delete(req.params.customerId);
  res.status(204).end();
});

module.exports = { cartRouter, cartOf };
