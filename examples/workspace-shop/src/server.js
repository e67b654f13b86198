const express = require("express");
const { productsRouter } = require("./routes/products");
const { ordersRouter } = require("./routes/orders");
const { cartRouter } = require("./routes/cart");
const { requestLogger, errorHandler } = require("./middleware");

const app = express();
app.use(express.json());
app.use(requestLogger);

app.use("/products", productsRouter);
app.use("/orders", ordersRouter);
app.use("/cart", cartRouter);

app.get("/health", (req, res) => res.json({ ok: true }));
app.use(errorHandler);

const PORT = process.env.PORT || 3000;
if (require.main === module) {
  app.listen(PORT, () => console.log(`shop-api listening on ${PORT}`));
}

module.exports = { app };
