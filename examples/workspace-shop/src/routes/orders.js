const express = require("express");
const { Order } = require("../models/order");
const { HttpError } = require("../middleware");

const ordersRouter = express.Router();

ordersRouter.post("/", (req, res, next) => {
  try {
    res.status(201).json(Order.place(req.body.customerId, req.body.lines));
  } catch (err) {
    next(new HttpError(409, err.message));
  }
});

ordersRouter.post("/:id/cancel", (req, res, next) => {
  const order = Order.cancel(req.params.id);
  if (!order) return next(new HttpError(409, "the order cannot be cancelled"));
  res.json(order);
});

ordersRouter.post("/:id/ship", (req, res) => {
  res.json(Order.markShipped(req.params.id));
});

module.exports = { ordersRouter };
