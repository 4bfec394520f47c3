// Package replset is one replica-set member's role machine: it decides
// whether this shardd is primary or secondary, runs elections, keeps the
// primary lease, fences a primary that lost it, follows the primary as a
// secondary (pulling its oplog, rolling back after a divergence, resyncing
// when it fell behind the oplog), and answers votes, status and step-down
// (DESIGN §4).
//
// # Elections
//
// The primary holds the shard's lease in etcd (pkg/catalog). When a member
// sees the lease key disappear it waits a randomized delay (ElectionBackoff)
// and stands: it reads the last term handed out, T-1, promises T itself,
// and asks every other member for a vote for T with its last optime. A
// voter grants the vote when no primary holds the lease (it re-reads the
// key before refusing on a stale view), the candidate's last optime is at
// least its own, and T is not older than a term it promised before; the
// grant is durable before the reply (storage.Engine.Vote) and promises
// that the voter will never apply an entry of a term older than T. The
// candidate needs grants from a majority of the members, itself included,
// and stands down if any answer shows a newer log than its own. It then
// takes the lease for exactly term T in one etcd transaction
// (catalog.AcquirePrimaryTerm). This is Raft's election with etcd as the
// term allocator, so a write held durably by a majority (w:"majority") is
// in the log of every member that can win.
//
// # Fencing
//
// A primary accepts writes only while time.Now() is before its lease's
// ValidUntil, a conservative end of the etcd lease measured from the last
// renewal request sent: it stops before etcd can expire the lease and let
// another member win. When the lease ends (expiry, revocation, a failed
// renewal, a step-down) the member becomes secondary at once: writes are
// refused with NotWritablePrimary, waits for a write concern fail with
// PrimarySteppedDown (nothing more is acknowledged), and the member
// follows the new primary, rolling back whatever it wrote that the new
// primary does not have.
//
// # What this package must never do
//
// It never writes documents itself (only the no-op entry that opens a
// term), never serves a write without a valid lease, and never applies an
// oplog entry of a term older than one it promised.
package replset
