package net.traffix.core.usage

import java.time.LocalDate
import net.traffix.core.policy.DataUsage

/**
 * The data caps as the phone's radio counts them: the app's own UID counters
 * (`TrafficStats.getUidRxBytes` + `getUidTxBytes`: both directions, every byte the app moved
 * with TLS, WebSocket and TCP overhead, the tunnel and the target connections alike). The
 * relayed payload alone is about half of that, since every byte crosses the radio twice.
 *
 * The counters run from boot, so the meter keeps the last reading and adds deltas:
 * - a new [MeterState.bootId] (a reboot) counts everything since boot;
 * - a counter that goes backwards within one boot (an OEM counter reset, a glitch) is a new
 *   base, never a negative delta;
 * - an unsupported counter (`TrafficStats.UNSUPPORTED`, -1) is skipped;
 * - the day and the month period roll over before a delta is added, so a delta is counted on
 *   the day of the reading that saw it.
 *
 * Plain Kotlin; the app reads the counters and persists [state].
 */
class RadioUsageMeter(initial: MeterState) {
    /** Everything to persist across restarts: the counts and the reading they were made from. */
    data class MeterState(
        val usage: DataUsage,
        /** rx + tx at the last reading, or null before the first. */
        val lastTotal: Long? = null,
        /** Identifies the boot [lastTotal] belongs to (Android: `Settings.Global.BOOT_COUNT`). */
        val bootId: Long? = null,
    )

    var state: MeterState = initial
        private set

    /** Current counts as of [date] (rolled over, nothing added). */
    fun usage(date: LocalDate, monthStartDay: Int): DataUsage = state.usage.rolledTo(date, monthStartDay)

    /**
     * Folds in one reading of the UID counters; returns the counts. [rx] or [tx] below zero
     * (unsupported) leave the counts as they were.
     */
    fun sample(rx: Long, tx: Long, bootId: Long?, date: LocalDate, monthStartDay: Int): DataUsage {
        val rolled = state.usage.rolledTo(date, monthStartDay)
        if (rx < 0 || tx < 0) {
            state = state.copy(usage = rolled)
            return rolled
        }
        val total = rx + tx
        val last = state.lastTotal
        val delta =
            when {
                last == null -> 0L // the first reading is the base
                bootId != state.bootId -> total // rebooted: the counters started again at zero
                total < last -> 0L // reset or glitch within one boot: a new base
                else -> total - last
            }
        val usage = rolled.plus(delta)
        state = MeterState(usage, total, bootId)
        return usage
    }
}
