package cdc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
)

// Errors of the reader.
var (
	// ErrRunning means Run was called while another Run of the same
	// Reader had not returned.
	ErrRunning = errors.New("cdc: the reader is already running")
	// ErrSlotNotFound means the replication slot does not exist in the
	// database: create it (ficus cdc setup) or fix the slot name.
	ErrSlotNotFound = errors.New("cdc: replication slot not found")
	// ErrPublicationNotFound means the publication does not exist in the
	// database: create it (ficus cdc setup) or fix the publication name.
	ErrPublicationNotFound = errors.New("cdc: publication not found")
)

// Defaults of ReaderConfig.
const (
	DefaultStatusInterval = time.Second
	DefaultHeartbeat      = 30 * time.Second
	DefaultQueueSize      = 1024
	DefaultBatchSize      = 4096
	DefaultDrainTimeout   = 30 * time.Second
	// DefaultPartSize is the PartSize ficus cdc run uses; ReaderConfig's
	// zero value delivers whole transactions.
	DefaultPartSize = 4096
)

// HeartbeatPrefix is the prefix of the logical decoding message the
// reader's heartbeat writes.
const HeartbeatPrefix = "ficus-heartbeat"

// heartbeatSQL writes a transactional message: it forms a transaction of
// its own that pgoutput sends (with the messages option, or on servers
// before 15 that send empty transactions too) and whose end LSN the reader
// can confirm.
const heartbeatSQL = `SELECT pg_logical_emit_message(true, '` + HeartbeatPrefix + `', now()::text)`

// slotQuery looks up the slot; %s is the quoted slot name.
const slotQuery = `SELECT plugin, slot_type, database, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s`

// publicationQuery checks that the publication exists; %s is its quoted name.
const publicationQuery = `SELECT 1 FROM pg_publication WHERE pubname = %s`

// sessionParams are set on the replication connection so that values
// arrive in the text forms the decoder reads.
var sessionParams = map[string]string{
	"TimeZone":           "UTC",
	"DateStyle":          "ISO, MDY",
	"IntervalStyle":      "postgres",
	"bytea_output":       "hex",
	"extra_float_digits": "3",
}

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// ConnString is the URL or keyword/value string of the database whose
	// slot is read; "replication=database" is added. The user needs the
	// REPLICATION attribute. Required.
	ConnString string
	// Slot is the name of the logical replication slot (plugin pgoutput).
	// Required.
	Slot string
	// Publication is the name of the publication that selects the tables,
	// written as in SQL (double-quote a mixed-case name), as for Setup.
	// Required.
	Publication string
	// Deliver hands a committed transaction with changes (or a part of
	// one, see PartSize) to the sinks and returns nil only once every sink
	// has acknowledged all its changes; the reader then lets the slot move
	// past it. It is called from one
	// goroutine, in commit order. An error that Retryable accepts pauses
	// delivery: the same transactions are delivered again after a wait.
	// Any other error stops Run, which returns it: the transaction is
	// delivered again by the next Run. After Run's context ends, the call
	// in progress gets DrainTimeout to finish. Required.
	Deliver func(ctx context.Context, tx Tx) error
	// DeliverBatch, when set, is used instead of Deliver: it gets several
	// consecutive transactions at once (those waiting when the previous
	// call returned, up to BatchSize changes; a larger transaction comes
	// alone) and returns nil once every sink has acknowledged all their
	// changes, so a sink can write and sync them together. Otherwise as
	// Deliver.
	DeliverBatch func(ctx context.Context, txs []Tx) error
	// MessagePrefix, when set, also hands to Deliver (or DeliverBatch)
	// the transactions without row changes that carry a logical decoding
	// message whose prefix starts with it (see Tx.Messages): ficus outbox
	// relays such messages. It must start with MessagePrefix, the
	// prefix of the messages the decoder keeps. Defaults to "": such
	// transactions are acknowledged without Deliver, as heartbeats are.
	// A transaction's messages are not split into parts (PartSize counts
	// changes): they are held in memory until its commit.
	MessagePrefix string
	// NoStreaming keeps the server from streaming large transactions
	// before they commit (protocol 2's streaming): it decodes them whole,
	// spilling to its own disk, and sends them after their commit. Set it
	// when messages matter that may be written in subtransactions that
	// abort: pgoutput streams a transactional message under its top-level
	// transaction's xid, not its subtransaction's, so the message of a
	// subtransaction that aborts after it was streamed cannot be told
	// from the others, while a transaction that is not streamed never
	// carries it. ficus outbox sets it. Defaults to false.
	NoStreaming bool
	// BatchSize is how many changes DeliverBatch gets at most, unless one
	// transaction alone has more. Defaults to 4096.
	BatchSize int
	// PartSize, when positive, hands a large transaction to Deliver (or
	// DeliverBatch) in parts of PartSize changes while the rest of it still
	// arrives, instead of whole: memory holds a few parts (the reader
	// waits while 4 parts wait for delivery) instead of the whole
	// transaction, and the sinks work while the server sends. A part has More
	// set and EndLSN zero; the last part carries EndLSN. Parts come in
	// order, one after another, and every change keeps the position and
	// event id it has in the whole transaction. The slot is confirmed past
	// the transaction only once its last part is acknowledged: a failure
	// or a stop in between delivers the transaction again from its first
	// change, with the same ids. A streamed transaction (protocol 2, larger
	// than the server's logical_decoding_work_mem), which may still abort,
	// waits in SpoolDir until it commits and then comes in parts the same
	// way. Zero (the default) delivers every transaction whole; ficus cdc
	// run uses DefaultPartSize.
	PartSize int
	// SpoolDir is the directory where the reader keeps streamed
	// transactions until they commit or abort, one file per transaction,
	// so that memory does not grow with their size; it needs room for the
	// largest transactions in progress at once (about their pgoutput
	// size). The files are removed when created and freed when their
	// transaction ends or the process exits. Defaults to os.TempDir().
	SpoolDir string
	// StatusInterval is how often the reader confirms its position to the
	// server (it also answers at once when the server asks). After a crash
	// the server sends again what was delivered since the last
	// confirmation, so a short interval means few redeliveries; each
	// confirmation is one small message. Defaults to 1s; it must stay below
	// the server's wal_sender_timeout (60s).
	StatusInterval time.Duration
	// Heartbeat is how often the reader writes a heartbeat message on a
	// normal connection, so that the slot advances while the captured
	// tables are idle and the rest of the server writes WAL. Defaults to
	// 30s; a negative value turns heartbeats off.
	Heartbeat time.Duration
	// HeartbeatConn is the connection string for heartbeats, snapshots and
	// the lookup of domain types; it must reach the same database.
	// Defaults to ConnString.
	HeartbeatConn string
	// QueueSize is how many decoded transactions may wait for delivery
	// before the reader stops reading from the server. Defaults to 1024.
	QueueSize int
	// DrainTimeout is how long the Deliver call in progress may still run
	// after Run's context ends. Defaults to 30s.
	DrainTimeout time.Duration
	// SnapshotChunkSize is how many rows of a table a snapshot reads and
	// delivers at a time (see RequestSnapshot). Defaults to 4096; a
	// negative value turns snapshots off. Snapshots need PostgreSQL 14 or
	// later, whose pgoutput sends the watermark messages.
	SnapshotChunkSize int
	// SnapshotPoll is how often the reader looks for requested snapshots
	// while none is running. Defaults to 5s.
	SnapshotPoll time.Duration
	// Retryable reports whether a Deliver (or DeliverBatch) error may heal,
	// a sink outage say: delivery then pauses and tries the same
	// transactions again after a wait (see RetryInitial), keeping the
	// connection and reading no further than QueueSize transactions ahead.
	// Defaults to nil: every Deliver error stops Run.
	Retryable func(error) bool
	// Reconnect reports whether a Deliver (or DeliverBatch) error that
	// Retryable rejects should end the replication session as a failed
	// connection does: the reader disconnects, waits (see RetryInitial)
	// and delivers the same transactions again from the slot's position.
	// Use it for failures of a database Deliver itself needs, such as the
	// captured server restarting: a reader pausing in place would keep
	// that server's fast shutdown waiting for its confirmation. Defaults
	// to nil: such errors stop Run.
	Reconnect func(error) bool
	// RetryInitial is the wait before the first reconnect after the
	// connection failed, and before the first redelivery after a retryable
	// Deliver error; it doubles with every further attempt up to RetryMax,
	// and each wait is drawn between half and all of it. Defaults to 500ms.
	RetryInitial time.Duration
	// RetryMax caps the wait between attempts. Defaults to 10s.
	RetryMax time.Duration
	// TakeoverRetryMax caps the wait between tries to start replication
	// while another process reads the slot (the server answers "slot
	// active", 55006): the reader stands by, Ready reports ErrStandby,
	// and it takes over within about this long once the other reader's
	// connection is gone. Standing by never counts towards GiveUpAfter.
	// Defaults to 2s (DefaultTakeoverRetryMax), and never more than
	// RetryMax.
	TakeoverRetryMax time.Duration
	// GiveUpAfter, when positive, makes Run return an error wrapping
	// ErrGaveUp once it has been without a replication connection, or the
	// sink has been failing, for that long. Zero (the default) retries
	// forever.
	GiveUpAfter time.Duration
	// Sleep waits between attempts and returns ctx's error when ctx ends
	// first. Defaults to a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) to draw the jitter of the waits.
	// Defaults to math/rand/v2.Float64.
	Rand func() float64
	// Logger receives the reader's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Metrics receives the ficus_cdc_* metrics. Defaults to a new set.
	Metrics *metrics.Set
	// Now tells the time for lag and delivery duration. Defaults to
	// time.Now.
	Now func() time.Time
}

// Reader reads a logical replication slot and delivers its committed
// transactions, in commit order, at least once.
type Reader struct {
	cfg         ReaderConfig
	publication string // as stored in the catalog
	log         *slog.Logger
	metrics     *readerMetrics
	dec         *Decoder
	// spool keeps streamed transactions until they end; held counts
	// what the reader holds in memory.
	spool   *spool
	held    heldBytes
	running atomic.Bool

	// acked is the end LSN of the last transaction every sink
	// acknowledged (at first the slot's confirmed flush LSN); walEnd the
	// server's WAL end from its last keepalive.
	acked  atomic.Uint64
	walEnd atomic.Uint64
	// pending holds the commit times of the transactions handed to the
	// delivery goroutine and not yet acknowledged, oldest first.
	pending pendingTimes
	// chunk is the snapshot chunk between its watermarks, if any.
	chunk atomic.Pointer[chunk]

	// connected is true while a replication session streams; paused while
	// delivery waits to retry a failed Deliver, which it has since
	// pausedSince (owned by the delivery goroutine).
	// sessions counts the replication sessions started (Sessions).
	sessions    atomic.Uint64
	connected   atomic.Bool
	standby     atomic.Bool
	paused      atomic.Bool
	pausedSince time.Time
}

// NewReader checks cfg, fills in its defaults and returns a Reader.
func NewReader(cfg ReaderConfig) (*Reader, error) {
	var errs []error
	if cfg.ConnString == "" {
		errs = append(errs, errors.New("ConnString is required (the database URL)"))
	} else if _, err := pgconn.ParseConfig(cfg.ConnString); err != nil {
		errs = append(errs, fmt.Errorf("ConnString: %w", err))
	}
	if err := validateSlotName(cfg.Slot); err != nil {
		errs = append(errs, err)
	}
	if err := validatePublicationName(cfg.Publication); err != nil {
		errs = append(errs, err)
	}
	if cfg.Deliver == nil && cfg.DeliverBatch == nil {
		errs = append(errs, errors.New("a Deliver or DeliverBatch func is required"))
	}
	if cfg.MessagePrefix != "" && !strings.HasPrefix(cfg.MessagePrefix, MessagePrefix) {
		errs = append(errs, fmt.Errorf("MessagePrefix %q must start with %q", cfg.MessagePrefix, MessagePrefix))
	}
	if cfg.BatchSize < 0 {
		errs = append(errs, errors.New("BatchSize must not be negative (zero means the default)"))
	}
	if cfg.PartSize < 0 {
		errs = append(errs, errors.New("PartSize must not be negative (zero delivers whole transactions)"))
	}
	cfg.BatchSize = cmp.Or(cfg.BatchSize, DefaultBatchSize)
	if cfg.StatusInterval < 0 || cfg.QueueSize < 0 || cfg.DrainTimeout < 0 {
		errs = append(errs, errors.New("StatusInterval, QueueSize and DrainTimeout must not be negative (zero means the default)"))
	}
	cfg.StatusInterval = cmp.Or(cfg.StatusInterval, DefaultStatusInterval)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, DefaultHeartbeat)
	cfg.HeartbeatConn = cmp.Or(cfg.HeartbeatConn, cfg.ConnString)
	if cfg.Heartbeat > 0 && cfg.HeartbeatConn != cfg.ConnString {
		if _, err := pgx.ParseConfig(cfg.HeartbeatConn); err != nil {
			errs = append(errs, fmt.Errorf("HeartbeatConn: %w", err))
		}
	}
	cfg.QueueSize = cmp.Or(cfg.QueueSize, DefaultQueueSize)
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout)
	cfg.SnapshotChunkSize = cmp.Or(cfg.SnapshotChunkSize, DefaultSnapshotChunkSize)
	if cfg.SnapshotPoll < 0 {
		errs = append(errs, errors.New("SnapshotPoll must not be negative (zero means the default)"))
	}
	cfg.SnapshotPoll = cmp.Or(cfg.SnapshotPoll, DefaultSnapshotPoll)
	if cfg.SpoolDir != "" {
		if info, err := os.Stat(cfg.SpoolDir); err != nil {
			errs = append(errs, fmt.Errorf("SpoolDir: %w (create the directory or choose another)", err))
		} else if !info.IsDir() {
			errs = append(errs, fmt.Errorf("SpoolDir: %s is not a directory", cfg.SpoolDir))
		}
	}
	cfg.SpoolDir = cmp.Or(cfg.SpoolDir, os.TempDir())
	if cfg.RetryInitial < 0 || cfg.RetryMax < 0 || cfg.GiveUpAfter < 0 || cfg.TakeoverRetryMax < 0 {
		errs = append(errs, errors.New("RetryInitial, RetryMax, TakeoverRetryMax and GiveUpAfter must not be negative (zero means the default)"))
	}
	cfg.RetryInitial = cmp.Or(cfg.RetryInitial, DefaultRetryInitial)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, DefaultRetryMax)
	cfg.TakeoverRetryMax = min(cmp.Or(cfg.TakeoverRetryMax, DefaultTakeoverRetryMax), cfg.RetryMax)
	if cfg.RetryInitial > cfg.RetryMax {
		errs = append(errs, fmt.Errorf("RetryInitial %s exceeds RetryMax %s", cfg.RetryInitial, cfg.RetryMax))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cdc reader config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = ctxsleep.Sleep
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	r := &Reader{
		cfg:         cfg,
		publication: publicationIdent(cfg.Publication),
		log:         cfg.Logger.With("component", "cdc", "slot", cfg.Slot),
		dec:         NewDecoder(),
		spool:       newSpool(cfg.SpoolDir, cfg.Slot, cfg.Metrics),
	}
	// Domain columns take their base type's encoding, looked up on a
	// normal connection.
	r.dec.ResolveType = newTypeResolver(cfg.HeartbeatConn).resolve
	r.metrics = newReaderMetrics(cfg.Metrics, r)
	return r, nil
}

// session is one replication connection.
type session struct {
	conn     *pgconn.PgConn
	database string
	// messages is true when the server sends logical decoding messages
	// (PostgreSQL 14 and later), which snapshots need.
	messages bool
	// received is the highest WAL position the server reported.
	received   pglogrepl.LSN
	nextStatus time.Time
	// parts holds a token for every part (Tx.More) in the queue.
	parts chan struct{}
}

// maxQueuedParts is how many parts of large transactions (PartSize) may
// wait for delivery: the reader stops reading while that many wait, so
// memory holds a few parts, not a whole large transaction.
const maxQueuedParts = 4

// session runs one replication session until ctx ends or an error occurs,
// and says whether it got as far as streaming. Delivery errors come as a
// *finalError.
func (r *Reader) session(ctx context.Context) (streamed bool, _ error) {
	s, err := r.connect(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, nil // stopped while connecting
		}
		return false, err
	}
	r.connected.Store(true)
	r.standby.Store(false)
	defer r.connected.Store(false)
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.conn.Close(closeCtx)
	}()

	readCtx, stopReading := context.WithCancelCause(ctx)
	defer stopReading(nil)
	deliverCtx, stopDelivering := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDelivering()
	queue := make(chan Tx, r.cfg.QueueSize)
	s.parts = make(chan struct{}, maxQueuedParts)
	delivered := make(chan struct{})

	var (
		wg         sync.WaitGroup
		deliverErr error
	)
	wg.Go(func() {
		defer close(delivered)
		if deliverErr = r.deliverLoop(readCtx, deliverCtx, queue, s.parts); deliverErr != nil {
			stopReading(deliverErr)
		}
	})
	wg.Go(func() {
		// After reading stops, the Deliver call in progress gets
		// DrainTimeout before its context is canceled.
		select {
		case <-delivered:
			return
		case <-readCtx.Done():
		}
		t := time.NewTimer(r.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-delivered:
		case <-t.C:
			r.log.Warn("delivery did not finish in time after stop; canceling it", "drain_timeout", r.cfg.DrainTimeout)
			stopDelivering()
		}
	})
	if r.cfg.Heartbeat > 0 {
		wg.Go(func() { r.heartbeatLoop(readCtx) })
	}
	if r.cfg.SnapshotChunkSize > 0 && s.messages {
		wg.Go(func() { newSnapshotter(r).loop(readCtx) })
	}

	readErr := r.readLoop(readCtx, s, queue)
	stopReading(readErr)
	wg.Wait()

	// Confirm what was acknowledged, including the transaction that was in
	// hand when reading stopped. After a read error the connection may be
	// gone; the attempt costs nothing.
	if err := r.sendStatus(s); err != nil && readErr == nil {
		r.log.Warn("final status update failed", "err", err)
	} else if readErr == nil {
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := EndStream(endCtx, s.conn); err != nil {
			r.log.Warn("ending the replication stream failed; the last confirmation may be redelivered", "err", err)
		}
		cancel()
	}
	r.pending.reset()
	r.held.reset()
	r.spool.reset()
	r.log.Info("replication stopped", "acknowledged_lsn", pglogrepl.LSN(r.acked.Load()))
	// A delivery that was canceled because it did not drain in time after
	// the connection failed is delivered again by the next session.
	canceledByLoss := readErr != nil && ctx.Err() == nil && deliverCtx.Err() != nil
	switch {
	case deliverErr != nil && !canceledByLoss && r.cfg.Reconnect != nil && r.cfg.Reconnect(deliverErr):
		return true, fmt.Errorf("%w: %w", errDeliverReconnect, deliverErr)
	case deliverErr != nil && !canceledByLoss:
		return true, &finalError{deliverErr}
	case readErr != nil:
		return true, readErr
	}
	return true, nil
}

// EndStream ends a replication stream as the protocol means it to end: it
// sends CopyDone and reads on until the server answers with its own, by
// which time the server has processed every status update sent before.
// Closing the connection instead can lose the last one: a client that
// closes with unread data resets the connection, and the server drops
// what it had not read yet. ctx's deadline bounds the wait; a server busy
// decoding a large transaction may answer late.
func EndStream(ctx context.Context, conn *pgconn.PgConn) error {
	if d, ok := ctx.Deadline(); ok {
		if err := conn.Conn().SetDeadline(d); err != nil {
			return fmt.Errorf("end replication stream: %w", err)
		}
		defer func() { _ = conn.Conn().SetDeadline(time.Time{}) }()
	}
	if _, err := pglogrepl.SendStandbyCopyDone(ctx, conn); err != nil {
		return fmt.Errorf("end replication stream: %w", err)
	}
	return nil
}

// connect opens the replication connection, checks the slot and the
// publication and starts replication at the slot's confirmed flush LSN.
func (r *Reader) connect(ctx context.Context) (*session, error) {
	cfg, err := pgconn.ParseConfig(r.cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication to %s: %w (the user needs the REPLICATION attribute)", cfg.Database, err)
	}
	s := &session{conn: conn}
	if err := r.start(ctx, s); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

func (r *Reader) start(ctx context.Context, s *session) error {
	sys, err := pglogrepl.IdentifySystem(ctx, s.conn)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	s.database = sys.DBName

	start, err := r.slotPosition(ctx, s)
	if err != nil {
		return err
	}
	// After a reconnect, the slot may hold an older confirmation than the
	// one this reader sent last: PostgreSQL 15 and older write a slot's
	// confirmed position to disk only now and then, so a restart takes it
	// back. Starting at what was acknowledged skips what the sinks have.
	if acked := pglogrepl.LSN(r.acked.Load()); acked > start {
		r.log.Info("resuming after the position acknowledged before the reconnect, past the slot's",
			"slot_lsn", start, "acknowledged_lsn", acked)
		start = acked
	}
	rows, err := s.conn.Exec(ctx, fmt.Sprintf(publicationQuery, quoteLiteral(r.publication))).ReadAll()
	if err != nil {
		return fmt.Errorf("look up publication %s: %w", r.cfg.Publication, err)
	}
	if len(rows) != 1 || len(rows[0].Rows) == 0 {
		return fmt.Errorf("%w: %s in database %s (create it with \"ficus cdc setup\")", ErrPublicationNotFound, r.cfg.Publication, s.database)
	}

	if r.dec.fullKeys, err = readFullIdentityKeys(ctx, s.conn); err != nil {
		return err
	}

	version, err := serverMajor(s.conn.ParameterStatus("server_version"))
	if err != nil {
		return err
	}
	args := []string{"publication_names " + quoteLiteral(quoteIdent(r.publication))}
	proto := 1
	switch {
	case version < 10:
		return fmt.Errorf("server version %d has no pgoutput: use PostgreSQL 10 or later", version)
	case version >= 14:
		// Protocol 2 streams large transactions before they commit; the
		// messages option sends the heartbeat's message, which keeps its
		// transaction from being skipped as empty.
		proto = 2
		args = append(args, "messages 'true'")
		if !r.cfg.NoStreaming {
			args = append(args, "streaming 'on'")
		}
		s.messages = true
	}
	args = append([]string{fmt.Sprintf("proto_version '%d'", proto)}, args...)

	r.dec.Reset()
	r.pending.reset()
	r.held.reset()
	r.spool.reset()
	r.acked.Store(uint64(start))
	s.received = start
	s.nextStatus = time.Now().Add(r.cfg.StatusInterval)
	err = pglogrepl.StartReplication(ctx, s.conn, r.cfg.Slot, start, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: args,
	})
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case "55000": // object_not_in_prerequisite_state: the slot was invalidated.
			return fmt.Errorf("start replication on slot %s: %w: %w", r.cfg.Slot, ErrSlotLost, err)
		case "55006": // object_in_use: another process reads the slot.
			return fmt.Errorf("start replication on slot %s: %w: %w", r.cfg.Slot, ErrSlotActive, err)
		}
	}
	if err != nil {
		return fmt.Errorf("start replication on slot %s at %s: %w", r.cfg.Slot, start, err)
	}
	r.sessions.Add(1)
	r.log.Info("replication started", "database", s.database, "publication", r.publication,
		"start_lsn", start, "protocol", proto, "server_version", version)
	return nil
}

// slotPosition checks the slot and returns its confirmed flush LSN.
func (r *Reader) slotPosition(ctx context.Context, s *session) (pglogrepl.LSN, error) {
	results, err := s.conn.Exec(ctx, fmt.Sprintf(slotQuery, quoteLiteral(r.cfg.Slot))).ReadAll()
	if err != nil {
		return 0, fmt.Errorf("look up slot %s: %w", r.cfg.Slot, err)
	}
	if len(results) != 1 || len(results[0].Rows) == 0 {
		return 0, fmt.Errorf("%w: %s (create it with \"ficus cdc setup\")", ErrSlotNotFound, r.cfg.Slot)
	}
	row := results[0].Rows[0]
	if len(row) != 4 {
		return 0, fmt.Errorf("look up slot %s: %d columns, want 4", r.cfg.Slot, len(row))
	}
	plugin, kind, database, confirmed := string(row[0]), string(row[1]), string(row[2]), row[3]
	switch {
	case kind != "logical" || plugin != OutputPlugin:
		return 0, fmt.Errorf("slot %s is a %s slot with plugin %q: ficus needs a logical slot with plugin %s", r.cfg.Slot, kind, plugin, OutputPlugin)
	case database != s.database:
		return 0, fmt.Errorf("slot %s belongs to database %s, not %s: connect to %s", r.cfg.Slot, database, s.database, database)
	case confirmed == nil:
		return 0, fmt.Errorf("slot %s has no confirmed flush LSN yet: it is still being created", r.cfg.Slot)
	}
	lsn, err := pglogrepl.ParseLSN(string(confirmed))
	if err != nil || lsn == 0 {
		return 0, fmt.Errorf("slot %s: confirmed flush LSN %q: %v", r.cfg.Slot, confirmed, err)
	}
	return lsn, nil
}

// readLoop receives and decodes messages until ctx ends (nil) or an error.
func (r *Reader) readLoop(ctx context.Context, s *session, queue chan<- Tx) error {
	// The connection's read deadline is set once per status interval, and
	// ctx's end moves it to now: a context per ReceiveMessage costs pgconn a
	// callback registration per message.
	conn := s.conn.Conn()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	var deadline time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		if !time.Now().Before(s.nextStatus) {
			if err := r.sendStatus(s); err != nil {
				return err
			}
		}
		if !deadline.Equal(s.nextStatus) {
			deadline = s.nextStatus
			if err := conn.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("receive replication message: %w", err)
			}
			if ctx.Err() != nil {
				return nil // ended between the check above and the deadline
			}
		}
		msg, err := s.conn.ReceiveMessage(context.Background())
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && pgconn.Timeout(err):
			continue // time for a status update
		case err != nil:
			return fmt.Errorf("receive replication message: %w", err)
		}
		if err := r.handle(ctx, s, msg, queue); err != nil {
			return err
		}
	}
}

// handle processes one message from the server.
func (r *Reader) handle(ctx context.Context, s *session, msg pgproto3.BackendMessage, queue chan<- Tx) error {
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return errors.New("receive replication message: empty CopyData")
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return fmt.Errorf("parse keepalive: %w", err)
			}
			s.received = max(s.received, ka.ServerWALEnd)
			r.walEnd.Store(uint64(ka.ServerWALEnd))
			// A keepalive's WAL end is where the server has decoded to.
			// When everything before it is delivered and acknowledged, it
			// is confirmed too: the server's fast shutdown waits for that.
			if r.idle() {
				storeMax(&r.acked, uint64(ka.ServerWALEnd))
			}
			if ka.ReplyRequested {
				return r.sendStatus(s)
			}
			return nil
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return fmt.Errorf("parse XLogData: %w", err)
			}
			s.received = max(s.received, xld.WALStart)
			// Every data message carries the server's WAL end too, so the
			// lag in bytes follows a busy stream, not only keepalives.
			if uint64(xld.ServerWALEnd) > r.walEnd.Load() {
				r.walEnd.Store(uint64(xld.ServerWALEnd))
			}
			if taken, err := r.spoolStream(ctx, s, xld.WALStart, xld.WALData, queue); taken || err != nil {
				return err
			}
			r.held.add(len(xld.WALData))
			tx, ok, err := r.dec.Decode(xld.WALStart, xld.WALData)
			if err != nil {
				return fmt.Errorf("decode message at %s: %w", xld.WALStart, err)
			}
			if ok {
				return r.enqueue(ctx, s, tx, queue)
			}
			if r.cfg.PartSize > 0 {
				if part, ok := r.dec.TakePart(r.cfg.PartSize); ok {
					return r.enqueue(ctx, s, part, queue)
				}
			}
			return nil
		}
		return fmt.Errorf("receive replication message: unknown CopyData type %q", msg.Data[0])
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("replication: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return errStreamEnded
	}
	return nil // notices and parameter changes
}

// enqueue hands tx to the delivery goroutine. While the queue is full, or
// maxQueuedParts parts wait already when tx is one, it keeps confirming its
// position so that the server does not time out.
func (r *Reader) enqueue(ctx context.Context, s *session, tx Tx, queue chan<- Tx) error {
	if tx.More {
		if err := waitSend(ctx, r, s, s.parts, struct{}{}); err != nil || ctx.Err() != nil {
			return err
		}
	}
	r.pending.push(tx.CommitTime)
	r.held.push()
	r.confirmOnRead(tx)
	return waitSend(ctx, r, s, queue, tx)
}

// waitSend sends v on ch, confirming the position while it waits. It
// returns nil, without sending, when ctx ends.
func waitSend[T any](ctx context.Context, r *Reader, s *session, ch chan<- T, v T) error {
	select {
	case ch <- v:
		return nil // the common case, without a timer
	default:
	}
	for {
		t := time.NewTimer(time.Until(s.nextStatus))
		select {
		case ch <- v:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
			if err := r.sendStatus(s); err != nil {
				return err
			}
		}
	}
}

// sendStatus confirms the acknowledged position to the server, always
// setting the flush position explicitly.
func (r *Reader) sendStatus(s *session) error {
	acked := pglogrepl.LSN(r.acked.Load())
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: max(s.received, acked),
		WALFlushPosition: acked,
		WALApplyPosition: acked,
		ClientTime:       r.cfg.Now(),
	})
	s.nextStatus = time.Now().Add(r.cfg.StatusInterval)
	if err != nil {
		return fmt.Errorf("confirm lsn %s: %w", acked, err)
	}
	return nil
}

// serverMajor reads the major version from the server_version parameter,
// e.g. "15.4 (Debian 15.4-1)" or "9.6.2".
func serverMajor(v string) (int, error) {
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(v)
	}
	n, err := strconv.Atoi(v[:end])
	if err != nil {
		return 0, fmt.Errorf("server version %q: cannot read the major version", v)
	}
	return n, nil
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
