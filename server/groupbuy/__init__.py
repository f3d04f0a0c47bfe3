"""Group-buy (拼团): seats taken atomically in Redis, groups that succeed into store vouchers
or fail into refunds, exactly once."""
