package net.traffix.core.policy

import java.time.DayOfWeek
import java.time.LocalDate
import java.time.LocalDateTime
import java.time.LocalTime
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.NetworkType
import net.traffix.core.protocol.NodeState
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.protocol.PauseCode

/*
 * The owner's resource policy: when may this phone carry other people's traffic?
 *
 * Pure functions over plain values: no clock, no Android, no I/O. The agent samples the
 * device (network, battery, counters, local time), calls [ResourcePolicy.decide] whenever
 * something changes and at every heartbeat, acts on the [ResourceDecision] and reports its
 * state in HEARTBEAT (docs/protocol.md "Heartbeats and drain").
 */

/** The owner's settings. Null limits are off. */
data class ResourceSettings(
    /**
     * Serve only on a network that costs the owner nothing per byte: not metered and not
     * roaming ([DeviceConditions.metered], [DeviceConditions.roaming]). A phone's hotspot is
     * Wi-Fi but metered, so it does not count.
     */
    val wifiOnly: Boolean = true,
    /** Serve only while the phone is charging (or has no battery). */
    val chargingOnly: Boolean = false,
    /** Stop below this battery level while not charging (0–100). */
    val batteryFloorPct: Int? = 30,
    /** Bytes per local calendar day (both directions, as the node counts them). */
    val dailyCapBytes: Long? = null,
    /** Bytes per month, the month starting on [monthStartDay]. */
    val monthlyCapBytes: Long? = null,
    /** Day of the month the monthly cap resets (1–31; clamped to short months), as a phone plan does. */
    val monthStartDay: Int = 1,
    /** When serving is allowed; [Schedule.ALWAYS] by default. */
    val schedule: Schedule = Schedule.ALWAYS,
    /** Most concurrent streams; declared to the server in HELLO and HEARTBEAT. */
    val maxStreams: Int = 64,
    /** The owner paused sharing (notification action, Quick Settings tile, app): no streams until resumed. */
    val paused: Boolean = false,
) {
    init {
        // The app judges the owner's form with [SettingsInput.check] first; this guards the rest.
        val problems = problems(batteryFloorPct, dailyCapBytes, monthlyCapBytes, monthStartDay, maxStreams)
        require(problems.isEmpty()) { "invalid settings: ${problems.joinToString("; ")}" }
    }

    companion object {
        /** What is out of range in these values, as typed problems (none: valid). */
        fun problems(
            batteryFloorPct: Int?,
            dailyCapBytes: Long?,
            monthlyCapBytes: Long?,
            monthStartDay: Int,
            maxStreams: Int,
        ): List<SettingsProblem> {
            val out = ArrayList<SettingsProblem>(0)
            if (batteryFloorPct != null && batteryFloorPct !in 0..100) {
                out += SettingsProblem(SettingsField.BATTERY_FLOOR, SettingsProblem.Kind.OUT_OF_RANGE, min = 0, max = 100)
            }
            if (dailyCapBytes != null && dailyCapBytes < 0) out += SettingsProblem(SettingsField.DAILY_CAP, SettingsProblem.Kind.NEGATIVE)
            if (monthlyCapBytes != null && monthlyCapBytes < 0) out += SettingsProblem(SettingsField.MONTHLY_CAP, SettingsProblem.Kind.NEGATIVE)
            if (monthStartDay !in 1..31) {
                out += SettingsProblem(SettingsField.MONTH_START_DAY, SettingsProblem.Kind.OUT_OF_RANGE, min = 1, max = 31)
            }
            if (maxStreams < 0) out += SettingsProblem(SettingsField.MAX_STREAMS, SettingsProblem.Kind.NEGATIVE)
            return out
        }
    }
}

/**
 * A weekly schedule: serving is allowed inside any of its [windows]; an empty schedule allows
 * all the time.
 */
data class Schedule(val windows: List<Window>) {
    /**
     * From [start] on each of [days] until [end]; an [end] at or before [start] ends on the next
     * day (22:00–07:00 is one night), and [end] equal to [start] is a full 24 hours.
     */
    data class Window(val days: Set<DayOfWeek>, val start: LocalTime, val end: LocalTime) {
        fun contains(now: LocalDateTime): Boolean {
            val t = now.toLocalTime()
            val today = now.dayOfWeek
            val yesterday = today.minus(1)
            return if (end.isAfter(start)) {
                today in days && !t.isBefore(start) && t.isBefore(end)
            } else {
                // Crosses midnight: the part after start on a listed day, or the part before end
                // on the day after one.
                (today in days && !t.isBefore(start)) || (yesterday in days && t.isBefore(end))
            }
        }
    }

    fun allows(now: LocalDateTime): Boolean = windows.isEmpty() || windows.any { it.contains(now) }

    companion object {
        val ALWAYS = Schedule(emptyList())
        val EVERY_DAY: Set<DayOfWeek> = DayOfWeek.values().toSet()
    }
}

/**
 * Bytes this node carried in the current day and month period. [day] is the local date the
 * counters belong to; [rolledTo] starts new periods.
 */
data class DataUsage(val day: LocalDate, val bytesToday: Long = 0, val bytesMonth: Long = 0) {
    init {
        require(bytesToday >= 0 && bytesMonth >= 0) { "negative byte counts" }
    }

    fun plus(bytes: Long): DataUsage {
        require(bytes >= 0) { "negative byte count" }
        return copy(bytesToday = bytesToday + bytes, bytesMonth = bytesMonth + bytes)
    }

    /** The counters as of [date]: today's reset on a new day, the month's on a new period. */
    fun rolledTo(date: LocalDate, monthStartDay: Int): DataUsage {
        if (date == day) return this
        val sameMonth = monthPeriodStart(date, monthStartDay) == monthPeriodStart(day, monthStartDay)
        return DataUsage(date, bytesToday = 0, bytesMonth = if (sameMonth) bytesMonth else 0)
    }

    companion object {
        /** The first day of the month period containing [date] when periods start on [startDay]. */
        fun monthPeriodStart(date: LocalDate, startDay: Int): LocalDate {
            val thisMonth = date.withDayOfMonth(minOf(startDay, date.lengthOfMonth()))
            if (!date.isBefore(thisMonth)) return thisMonth
            val prev = date.minusMonths(1)
            return prev.withDayOfMonth(minOf(startDay, prev.lengthOfMonth()))
        }
    }
}

/** The device as sampled now. */
data class DeviceConditions(
    /** The chosen network's transport, as reported to the server. */
    val network: NetworkType,
    /** 0–100, or null for a device without a battery (on mains, treated as charging). */
    val batteryPct: Int?,
    val charging: Boolean,
    val usage: DataUsage,
    /** Local wall-clock time, for the schedule. */
    val now: LocalDateTime,
    val activeStreams: Int,
    /**
     * The network may cost the owner per byte (Android: no `NET_CAPABILITY_NOT_METERED`).
     * Without a platform answer: anything but Wi-Fi or Ethernet is metered.
     */
    val metered: Boolean = network != NetworkType.WIFI && network != NetworkType.ETHERNET,
    /** The network is roaming (Android: no `NET_CAPABILITY_NOT_ROAMING`). */
    val roaming: Boolean = false,
    /** The owner turned on Data Saver for this app (`RESTRICT_BACKGROUND_STATUS_ENABLED`). */
    val dataSaver: Boolean = false,
    /** The phone is in Battery Saver (`PowerManager.isPowerSaveMode`). */
    val batterySaver: Boolean = false,
) {
    init {
        require(batteryPct == null || batteryPct in 0..100) { "battery $batteryPct% not in 0..100" }
        require(activeStreams >= 0) { "negative active streams" }
    }

    /** Charging, or no battery at all. */
    val powered: Boolean get() = charging || batteryPct == null
}

/**
 * Why the node is not serving. [hard] reasons stop live streams at once. [code] is what
 * HEARTBEAT's pause_reason says.
 */
enum class PauseReason(val hard: Boolean, val text: String, val code: PauseCode) {
    /** The owner paused sharing. */
    BY_OWNER(true, "paused by you", PauseCode.BY_OWNER),

    /** Every further byte would cost the owner: a metered (cellular, hotspot) or roaming network. */
    NOT_ON_WIFI(true, "not on an unmetered network", PauseCode.NOT_ON_WIFI),

    /** Data Saver is on and the network is metered: the owner asked apps to save data. */
    DATA_SAVER(true, "Data Saver is on", PauseCode.DATA_SAVER),

    /** The counted bytes reached the owner's daily cap. */
    DAILY_CAP(true, "daily data cap reached", PauseCode.DAILY_CAP),

    /** The counted bytes reached the owner's monthly cap. */
    MONTHLY_CAP(true, "monthly data cap reached", PauseCode.MONTHLY_CAP),

    NOT_CHARGING(false, "not charging", PauseCode.NOT_CHARGING),
    BATTERY_LOW(false, "battery below the owner's floor", PauseCode.BATTERY_LOW),
    OUTSIDE_SCHEDULE(false, "outside the owner's schedule", PauseCode.OUTSIDE_SCHEDULE),

    /** The phone is saving battery: let live streams finish, take no new ones. */
    BATTERY_SAVER(false, "Battery Saver is on", PauseCode.BATTERY_SAVER),
}

/** What the node does. */
enum class Action {
    /** Accept new streams (up to the stream cap). */
    SERVE,

    /** Accept no new streams; live streams may finish. */
    DRAIN,

    /** Accept no new streams; no live stream carries on (reset, or none left). */
    PAUSE,
}

data class ResourceDecision(val action: Action, val reasons: Set<PauseReason>) {
    /** The HEARTBEAT state for this decision. */
    val state: NodeState
        get() = when (action) {
            Action.SERVE -> NodeState.SERVING
            Action.DRAIN -> NodeState.DRAINING
            Action.PAUSE -> NodeState.PAUSED
        }

    /** The reasons in words, for the notification and for DRAIN's reason text. */
    fun describe(): String = if (reasons.isEmpty()) "serving" else reasons.joinToString("; ") { it.text }

    companion object {
        val SERVE = ResourceDecision(Action.SERVE, emptySet())
    }
}

object ResourcePolicy {
    /**
     * Points above the floor the battery must climb back to before serving again after
     * [PauseReason.BATTERY_LOW], so a phone hovering at the floor does not flap.
     */
    const val BATTERY_HYSTERESIS_PCT = 5

    /**
     * Serve, drain or pause.
     *
     * Hard reasons (paused by the owner, a metered or roaming network when Wi-Fi only, Data
     * Saver on a metered network, a data cap reached) pause at once: live streams would keep
     * spending what the owner capped. Soft reasons (not charging when charging only, battery
     * below the floor while not charging, outside the schedule, Battery Saver) drain: no new
     * streams, live ones finish, and the node pauses once none is left.
     *
     * [previous] is the last decision, for the battery hysteresis; null at start.
     */
    fun decide(settings: ResourceSettings, now: DeviceConditions, previous: ResourceDecision? = null): ResourceDecision {
        val reasons = LinkedHashSet<PauseReason>()
        if (settings.paused) reasons.add(PauseReason.BY_OWNER)
        if (settings.wifiOnly && (now.metered || now.roaming)) reasons.add(PauseReason.NOT_ON_WIFI)
        if (now.dataSaver && now.metered) reasons.add(PauseReason.DATA_SAVER)
        settings.dailyCapBytes?.let { if (now.usage.bytesToday >= it) reasons.add(PauseReason.DAILY_CAP) }
        settings.monthlyCapBytes?.let { if (now.usage.bytesMonth >= it) reasons.add(PauseReason.MONTHLY_CAP) }
        if (settings.chargingOnly && !now.powered) reasons.add(PauseReason.NOT_CHARGING)
        val floor = settings.batteryFloorPct
        val battery = now.batteryPct
        if (floor != null && battery != null && !now.charging) {
            val wasLow = previous?.reasons?.contains(PauseReason.BATTERY_LOW) == true
            val resumeAt = if (wasLow) floor + BATTERY_HYSTERESIS_PCT else floor
            if (battery < resumeAt) reasons.add(PauseReason.BATTERY_LOW)
        }
        if (!settings.schedule.allows(now.now)) reasons.add(PauseReason.OUTSIDE_SCHEDULE)
        if (now.batterySaver && !now.powered) reasons.add(PauseReason.BATTERY_SAVER)

        val action =
            when {
                reasons.isEmpty() -> Action.SERVE
                reasons.any { it.hard } || now.activeStreams == 0 -> Action.PAUSE
                else -> Action.DRAIN
            }
        return ResourceDecision(action, reasons)
    }

    /**
     * Whether to open one more stream: null to accept, else the OPEN_ERR reason. The server
     * routes by the node's heartbeat, so this is the node's own guard against a stale view.
     */
    fun admitStream(settings: ResourceSettings, decision: ResourceDecision, activeStreams: Int): OpenErrReason? =
        when {
            decision.action != Action.SERVE -> OpenErrReason.DRAINING
            activeStreams >= settings.maxStreams -> OpenErrReason.NODE_BUSY
            else -> null
        }

    /** The HEARTBEAT reporting [decision] and the device's state (battery only when it has one). */
    fun heartbeat(
        seq: Long,
        settings: ResourceSettings,
        decision: ResourceDecision,
        now: DeviceConditions,
        uptimeS: Long,
    ): Frame.Heartbeat =
        Frame.Heartbeat(
            seq = seq,
            state = decision.state,
            batteryPct = now.batteryPct,
            charging = if (now.batteryPct != null) now.charging else null,
            network = now.network,
            bytesToday = now.usage.bytesToday,
            bytesMonth = now.usage.bytesMonth,
            maxStreams = settings.maxStreams.toLong(),
            dailyCap = settings.dailyCapBytes,
            monthlyCap = settings.monthlyCapBytes,
            activeStreams = now.activeStreams.toLong(),
            uptimeS = uptimeS,
            // The first reason (hard ones are added first), so the server can tell its owner why.
            pauseReason = if (decision.state == NodeState.PAUSED) decision.reasons.firstOrNull()?.code else null,
        )
}
