const db = require("../db");
const { Product } = require("./product");

const STATUSES = ["pending", "paid", "shipped", "cancelled"];

class Order {
  static place(customerId, lines) {
    for (const line of lines) {
      if (!Product.reserveStock(line.productId, line.quantity)) {
        throw new Error(`not enough stock for product ${line.productId}`);
      }
    }
    const totalCents = lines.reduce((sum, l) => sum + Product.find(l.productId).priceCents * l.quantity, 0);
    return db.insert("orders", { customerId, lines, totalCents, status: "pending" });
  }

  static cancel(id) {
    const order = db.findById("orders", id);
    if (!order || order.status === "shipped") return null;
    for (const line of order.lines) Product.releaseStock(line.productId, line.quantity);
    return db.update("orders", id, { status: "cancelled" });
  }

  static markShipped(id) {
    return db.update("orders", id, { status: "shipped" });
  }
}

module.exports = { Order, STATUSES };
