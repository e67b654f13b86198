const db = require("../db");

class Product {
  static create({ name, priceCents, stock = 0, category = "general" }) {
    if (!name) throw new Error("a product needs a name");
    if (!Number.isInteger(priceCents) || priceCents < 0) throw new Error("priceCents must be a whole number of cents");
    return db.insert("products", { name, priceCents, stock, category });
  }

  static find(id) {
    return db.findById("products", id);
  }

  static inCategory(category) {
    return db.all("products").filter((p) => p.category === category);
  }

  static reserveStock(id, quantity) {
    const product = db.findById("products", id);
    if (!product || product.stock < quantity) return false;
    product.stock -= quantity;
    return true;
  }

  static releaseStock(id, quantity) {
    const product = db.findById("products", id);
    if (product) product.stock += quantity;
  }
}

module.exports = { Product };
