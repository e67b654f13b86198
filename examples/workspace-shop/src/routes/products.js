const express = require("express");
const { Product } = require("../models/product");
const { HttpError } = require("../middleware");

const productsRouter = express.Router();

productsRouter.get("/", (req, res) => {
  const { category } = req.query;
  res.json(category ? Product.inCategory(category) : require("../db").all("products"));
});

productsRouter.get("/:id", (req, res, next) => {
  const product = Product.find(req.params.id);
  if (!product) return next(new HttpError(404, "no such product"));
  res.json(product);
});

productsRouter.post("/", (req, res) => {
  res.status(201).json(Product.create(req.body));
});

module.exports = { productsRouter };
