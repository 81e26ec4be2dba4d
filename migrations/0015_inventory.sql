-- Inventory (issue 18): every change of a product's stock is a movement row written in the
-- same D1 batch as the product's new quantity (the row is inserted only when the change keeps
-- the stock within 0..1,000,000,000, and the product takes its quantity from that row), a
-- reorder level per product, and a flag that makes a low-stock alert go out once per crossing.

CREATE TABLE stock_movements (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  product_id TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('receipt', 'sale', 'adjustment', 'return')),
  -- The signed change: negative for a sale, either sign for an adjustment.
  quantity INTEGER NOT NULL CHECK (quantity != 0),
  quantity_after INTEGER NOT NULL CHECK (quantity_after >= 0),
  reason TEXT,
  reference TEXT,
  -- The user (or API key) that recorded it.
  user_id TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX stock_movements_product_page ON stock_movements (product_id, created_at, id);

-- NULL: no reorder level, never low on stock.
ALTER TABLE products ADD COLUMN reorder_level INTEGER CHECK (reorder_level >= 0);
-- 1 while the quantity is at or below the reorder level and the admins were told; back to 0
-- (armed) once the quantity is above it again.
ALTER TABLE products ADD COLUMN low_stock_alerted INTEGER NOT NULL DEFAULT 0;
