#!/usr/bin/env python3
"""What SQLite alone costs for the rows one pre-order stores (docs/benchmarks.md).

Not the product: the product's schema (every migration in migrations/sqlite), the rows a
run of placements on one hot campaign writes (pre-orders, their holds' ledger
transactions and legs, idempotency records, `preorder.placed` events, the batch's units;
every hundredth order locks its batch: captures, balances due, `balance.due` events),
written with the product's multi-row statements (`json_each`), in groups of G orders a
transaction, WAL and synchronous=FULL. It prints the time spent in SQLite per order by
statement, the commit's p50/p99, and the write-ahead log and file bytes per order. No
gRPC, no Rust: what is left when everything but SQLite is free.

    python3 docs/tools/sqlite_floor.py [product|noresp|nohold|noevents]

Environment: N orders (20000), G orders a group (32), AUTOCKPT the writer's
wal_autocheckpoint in pages (1000, SQLite's default; 0 turns checkpoints off, and then
the log's length is what was written to it, printed per order), CKPT_EVERY seconds
between passive checkpoints from a second connection, on a timer (none; the store's
checkpointer is woken by its writer instead), DROP comma-separated indexes to drop, DB the
file (/tmp/c2m-sqlite-floor.db). Variants: noresp stores empty idempotency answers,
nohold writes no hold transactions, noevents no events. Python's sqlite3 and Python's own
time are in the figures, so read them against each other, not as the product's.
"""
import collections, glob, json, os, random, sqlite3, sys, threading, time, uuid

variant = sys.argv[1] if len(sys.argv) > 1 else 'product'
if variant not in ('product', 'noresp', 'nohold', 'noevents'):
    sys.exit(f'unknown variant {variant!r}: product, noresp, nohold or noevents')
N = int(os.environ.get('N', '20000'))
G = int(os.environ.get('G', '32'))
THRESHOLD = 100
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
path = os.environ.get('DB', '/tmp/c2m-sqlite-floor.db')
for suffix in ('', '-wal', '-shm'):
    if os.path.exists(path + suffix):
        os.remove(path + suffix)

db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
for pragma in ('journal_mode=wal', 'synchronous=full', 'foreign_keys=on', 'temp_store=memory',
               f"wal_autocheckpoint={os.environ.get('AUTOCKPT', '1000')}"):
    db.execute(f'pragma {pragma}')
for migration in sorted(glob.glob(os.path.join(ROOT, 'migrations/sqlite/*.sql'))):
    db.executescript(open(migration).read())
for index in filter(None, os.environ.get('DROP', '').split(',')):
    db.execute(f'DROP INDEX {index}')

if os.environ.get('CKPT_EVERY'):
    def checkpointer(every=float(os.environ['CKPT_EVERY'])):
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        while True:
            time.sleep(every)
            conn.execute('pragma wal_checkpoint(PASSIVE)').fetchall()
    threading.Thread(target=checkpointer, daemon=True).start()

spent = collections.Counter()
commits = []

def sql(text, args=()):
    """Runs one statement and charges its time (rows fetched included) to its first words."""
    start = time.perf_counter()
    rows = db.execute(text, args).fetchall()
    took = time.perf_counter() - start
    name = ' '.join(text.split()[:3])
    spent[name] += took
    if name == 'COMMIT':
        commits.append(took)
    return rows

def uid(prefix):  # time-ordered, as the product's UUIDv7 ids are
    return f'{prefix}_{time.time_ns():016x}{random.getrandbits(64):016x}'

NOW = 1_700_000_000_000_000
CAMPAIGN = uid('cmp')
sql('INSERT INTO campaigns (id, sku, title, currency, unit_price, deposit, batch_threshold, '
    'opens_at, deadline, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)',
    (CAMPAIGN, 'sku', 'title', 'EUR', 1000, 100, THRESHOLD, NOW, NOW + 10**12, NOW))
PREORDERS = ('INSERT INTO preorders (id, campaign_id, consumer_id, batch_id, quantity, unit_price, '
             'deposit_total, currency, created_at) SELECT value ->> 0, ?2, value ->> 1, ?3, '
             'value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 '
             'FROM json_each(?1) ORDER BY key')
TXNS = ('INSERT INTO ledger_txns (id, campaign_id, preorder_id, batch_id, kind, currency, at) '
        'SELECT value ->> 0, ?2, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 '
        'FROM json_each(?1) ORDER BY key')
LEGS = ('INSERT INTO ledger_postings (txn_seq, account, amount) SELECT t.seq, l.value ->> 1, '
        'l.value ->> 2 FROM json_each(?1) AS l JOIN ledger_txns t ON t.id = l.value ->> 0 '
        'ORDER BY l.key')
KEYS = ('INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) '
        'SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 '
        'FROM json_each(?1) ORDER BY key')
EVENTS = ('INSERT INTO events (seq, id, campaign_id, batch_id, kind, occurred_at, data) '
          'SELECT ?2 + key + 1, value ->> 0, ?3, value ->> 1, value ->> 2, ?4, value ->> 3 '
          'FROM json_each(?1) ORDER BY key')
ANSWER = 'a' * 600   # about the size of a stored PlacePreorder answer
EVENT = 'e' * 420    # about the size of an event's body

def events(rows):
    if variant == 'noevents':
        return
    (first,) = sql('UPDATE event_counter SET last_seq = last_seq + ? WHERE id = 1 '
                   'RETURNING last_seq - ?', (len(rows), len(rows)))[0]
    sql(EVENTS, (json.dumps(rows), first, CAMPAIGN, NOW))

def txns(rows, legs):
    sql(TXNS, (json.dumps(rows), CAMPAIGN))
    sql(LEGS, (json.dumps(legs),))

consumers = [f'consumer-{i}' for i in range(5000)]
batch, batch_seq, units, in_batch = None, 0, 0, []
start = time.perf_counter()
placed = 0
while placed < N:
    group = [(uid('pre'), random.choice(consumers), f'key-{random.getrandbits(64):x}')
             for _ in range(G)]
    sql('BEGIN IMMEDIATE')
    # The run's reads: the campaign, the keys, the open batch, each consumer's units.
    sql('SELECT * FROM campaigns WHERE id = ?', (CAMPAIGN,))
    sql('SELECT key FROM idempotency_keys WHERE operation = ? AND key IN '
        '(SELECT value FROM json_each(?))', ('place', json.dumps([k for _, _, k in group])))
    sql("SELECT id, units FROM batches WHERE campaign_id = ? AND status = 'open'", (CAMPAIGN,))
    sql('SELECT consumer_id, SUM(quantity) FROM preorders WHERE campaign_id = ? AND consumer_id '
        'IN (SELECT value FROM json_each(?)) GROUP BY consumer_id',
        (CAMPAIGN, json.dumps([c for _, c, _ in group])))
    i = 0
    while i < len(group):
        if batch is None:
            batch_seq += 1
            batch, units, in_batch = uid('bat'), 0, []
            sql('INSERT INTO batches (id, campaign_id, seq, status, units, threshold, created_at) '
                "VALUES (?,?,?,'open',0,?,?)", (batch, CAMPAIGN, batch_seq, THRESHOLD, NOW))
            sql("INSERT INTO batch_transitions (batch_id, status, at) VALUES (?, 'open', ?)",
                (batch, NOW))
        run = group[i:i + min(len(group) - i, THRESHOLD - units)]
        i += len(run)
        holds, legs, keys, placed_events = [], [], [], []
        for preorder, consumer, key in run:
            if variant != 'nohold':
                txn = uid('ltx')
                holds.append([txn, preorder, None, 'hold', 'EUR', NOW])
                legs += [[txn, f'consumer:{consumer}', -100], [txn, f'holds:{CAMPAIGN}', 100]]
            keys.append(['place', key, 'f' * 64, '' if variant == 'noresp' else ANSWER, NOW])
            placed_events.append([uid('evt'), batch, 'preorder.placed', EVENT])
        sql(PREORDERS, (json.dumps([[p, c, 1, 1000, 100, 'EUR', NOW] for p, c, _ in run]),
                        CAMPAIGN, batch))
        if holds:
            txns(holds, legs)
        sql(KEYS, (json.dumps(keys),))
        units += len(run)
        in_batch += [(p, c) for p, c, _ in run]
        sql("UPDATE batches SET units = ? WHERE id = ? AND status = 'open'", (units, batch))
        events(placed_events)
        if units == THRESHOLD:  # the batch locks: every hold captured, a balance due each
            sql("UPDATE batches SET status = 'locked', locked_at = ?, final_unit_price = 1000, "
                "currency = 'EUR', balance_due_by = ? WHERE id = ?", (NOW, NOW + 10**10, batch))
            sql("INSERT INTO batch_transitions (batch_id, status, at) VALUES (?, 'locked', ?)",
                (batch, NOW))
            captures, legs, dues, due_events = [], [], [], []
            for preorder, _ in in_batch:
                txn = uid('ltx')
                captures.append([txn, preorder, None, 'capture', 'EUR', NOW])
                legs += [[txn, f'holds:{CAMPAIGN}', -100], [txn, f'escrow:{CAMPAIGN}', 100]]
                dues.append([preorder, 900, None])
                due_events.append([uid('evt'), batch, 'balance.due', EVENT])
            txns(captures, legs)
            sql("UPDATE preorders SET hold_state = 'captured', balance_due = v.value ->> 1, "
                'balance_paid_at = v.value ->> 2 FROM json_each(?1) AS v '
                "WHERE preorders.id = v.value ->> 0 AND preorders.hold_state = 'held' "
                'AND preorders.balance_due IS NULL', (json.dumps(dues),))
            events(due_events + [[uid('evt'), batch, 'batch.locked', EVENT]])
            batch = None
    sql('COMMIT')
    placed += len(group)
took = time.perf_counter() - start

for name, seconds in spent.most_common(8):
    print(f'{1e6 * seconds / placed:7.1f} µs an order  {name}')
print(f'{1e6 * sum(spent.values()) / placed:7.1f} µs an order in SQLite, '
      f'{1e6 * took / placed:.1f} in all: {placed / took:,.0f} orders/s')
commits.sort()
print(f'commit p50 {1e3 * commits[len(commits) // 2]:.2f} ms, '
      f'p99 {1e3 * commits[len(commits) * 99 // 100]:.2f} ms')
wal = os.path.getsize(path + '-wal') if os.path.exists(path + '-wal') else 0
print(f'file {os.path.getsize(path) / placed:,.0f} B an order, log now {wal / 2**20:.1f} MiB')
if os.environ.get('AUTOCKPT') == '0' and not os.environ.get('CKPT_EVERY'):
    print(f'log written: {wal / placed:,.0f} B an order (no checkpoint ran)')
