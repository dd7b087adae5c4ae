package net.traffix.core.agent

import java.time.LocalDate
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.StatsEntry
import net.traffix.core.protocol.StatsStatus

/*
 * Control requests over the tunnel (docs/protocol.md "Control requests", version 2): the
 * owner's earnings and traffic history and unpairing. The app has no user login; the device key
 * that authenticates the tunnel is the owner's credential, so these go over it.
 */

/** One day or calendar month of this device's usage as the server counts it. */
data class HistoryPeriod(
    /** The period's first day (UTC). */
    val start: LocalDate,
    /** Bytes carried both ways. */
    val bytes: Long,
    /** What the owner earned, in micro-units (1_000_000 = 1.00) of [DeviceHistory.currency]. */
    val earnedMicros: Long,
)

/** The server's numbers for this device: oldest first, every period present, the last one current. */
data class DeviceHistory(
    val currency: String,
    val days: List<HistoryPeriod>,
    val months: List<HistoryPeriod>,
) {
    companion object {
        internal fun of(s: Frame.Stats): DeviceHistory {
            fun periods(list: List<StatsEntry>) =
                list.map { HistoryPeriod(LocalDate.ofEpochDay(it.startDay), it.bytes, it.earned) }
            return DeviceHistory(s.currency ?: "", periods(s.days), periods(s.months))
        }
    }
}

/** Why a control request got no answer; the app maps each to a string resource. */
enum class ControlFailure {
    /** No tunnel is up and none can be opened for the request (an insecure development link). */
    NOT_CONNECTED,

    /** This device was never paired: the server does not know it yet. */
    NOT_PAIRED,

    /** A control-only session could not reach the server (no network, refused, TLS or pin failure). */
    UNREACHABLE,

    /** The device key cannot sign (Keystore reset or locked). */
    KEY_UNAVAILABLE,

    /** The server's answer broke the protocol (answered with ERROR 5). */
    BAD_ANSWER,

    /** The server speaks protocol 1, which has no control requests: it must be updated. */
    SERVER_TOO_OLD,

    /** The server has no numbers to give (billing off, or it could not read them). */
    UNAVAILABLE,

    /** Too many requests are waiting already. */
    BUSY,

    /** No answer in time. */
    NO_ANSWER,

    /** The tunnel closed before the answer came. */
    TUNNEL_CLOSED,

    /** The server could not do it (its ERROR says why in the detail). */
    SERVER_ERROR,
}

sealed class StatsResult {
    data class Ok(val history: DeviceHistory) : StatsResult()

    /** Asked too often: the server answers again after [retryAfterS] seconds. */
    data class RateLimited(val retryAfterS: Int) : StatsResult()

    data class Failed(val reason: ControlFailure, val detail: String = "") : StatsResult()
}

sealed class UnpairResult {
    /** The server forgot this device; the app deletes the key and goes back to pairing. */
    object Unpaired : UnpairResult()

    data class Failed(val reason: ControlFailure, val detail: String = "") : UnpairResult()
}

/**
 * The control requests of one tunnel waiting for their answer, by request id: at most
 * [MAX_PENDING], each failed after its timeout or when the tunnel closes. Scheduler thread only.
 */
internal class ControlRequests(private val scheduler: Scheduler, private val timeoutMillis: Long) {
    private class Pending(val onStats: ((StatsResult) -> Unit)?, val onUnpair: ((UnpairResult) -> Unit)?, val timer: Cancellable)

    private val pending = LinkedHashMap<Long, Pending>()
    private var nextId = 1L

    /** Registers a request and returns its id, or null when [MAX_PENDING] already wait. */
    fun add(onStats: ((StatsResult) -> Unit)?, onUnpair: ((UnpairResult) -> Unit)?): Long? {
        if (pending.size >= MAX_PENDING) return null
        val id = nextId
        nextId = if (nextId >= 0xffff_ffffL) 1 else nextId + 1
        val timer = scheduler.schedule(timeoutMillis, Runnable { fail(id, ControlFailure.NO_ANSWER, "") })
        pending[id] = Pending(onStats, onUnpair, timer)
        return id
    }

    /** A STATS arrived; a late or unknown one is ignored. */
    fun stats(s: Frame.Stats) {
        // Only an answer of the kind asked: a STATS echoing an UNPAIR's id is not its answer.
        if (pending[s.requestId]?.onStats == null) return
        val p = pending.remove(s.requestId) ?: return
        p.timer.cancel()
        p.onStats?.invoke(result(s))
    }

    /** UNPAIRED arrived: true when it answers a request of ours. */
    fun unpaired(u: Frame.Unpaired): Boolean {
        // Only an answer to an UNPAIR of ours: an UNPAIRED echoing a STATS request's id must not
        // make the app delete its key.
        if (pending[u.requestId]?.onUnpair == null) return false
        val p = pending.remove(u.requestId) ?: return false
        p.timer.cancel()
        p.onUnpair?.invoke(UnpairResult.Unpaired)
        return true
    }

    private fun fail(id: Long, reason: ControlFailure, detail: String) {
        val p = pending.remove(id) ?: return
        p.timer.cancel()
        p.onStats?.invoke(StatsResult.Failed(reason, detail))
        p.onUnpair?.invoke(UnpairResult.Failed(reason, detail))
    }

    /** The tunnel ended: every waiting request fails with [reason]. */
    fun closeAll(reason: ControlFailure, detail: String) {
        for (id in pending.keys.toList()) fail(id, reason, detail)
    }

    val size: Int get() = pending.size

    companion object {
        /** Requests one tunnel may have waiting at once (the screen asks one at a time). */
        const val MAX_PENDING = 4

        /** A STATS as the app sees it. */
        fun result(s: Frame.Stats): StatsResult =
            when (s.status) {
                StatsStatus.OK -> StatsResult.Ok(DeviceHistory.of(s))
                StatsStatus.RATE_LIMITED -> StatsResult.RateLimited(s.retryAfterS ?: 10)
                StatsStatus.UNAVAILABLE -> StatsResult.Failed(ControlFailure.UNAVAILABLE)
            }
    }
}
