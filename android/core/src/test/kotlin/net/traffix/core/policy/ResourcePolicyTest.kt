package net.traffix.core.policy

import java.time.DayOfWeek
import java.time.LocalDate
import java.time.LocalDateTime
import java.time.LocalTime
import net.traffix.core.protocol.FrameCodec
import net.traffix.core.protocol.DecodeResult
import net.traffix.core.protocol.NetworkType
import net.traffix.core.protocol.NodeState
import net.traffix.core.protocol.PauseCode
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.policy.PauseReason.BATTERY_LOW
import net.traffix.core.policy.PauseReason.DAILY_CAP
import net.traffix.core.policy.PauseReason.MONTHLY_CAP
import net.traffix.core.policy.PauseReason.NOT_CHARGING
import net.traffix.core.policy.PauseReason.NOT_ON_WIFI
import net.traffix.core.policy.PauseReason.OUTSIDE_SCHEDULE
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

class ResourcePolicyTest {
    /** Wednesday 26 November 2025, 14:30. */
    private val wednesday = LocalDateTime.of(2025, 11, 26, 14, 30)

    private val open = ResourceSettings(wifiOnly = false, batteryFloorPct = null)

    private fun device(
        network: NetworkType = NetworkType.WIFI,
        battery: Int? = 80,
        charging: Boolean = false,
        today: Long = 0,
        month: Long = 0,
        now: LocalDateTime = wednesday,
        active: Int = 0,
    ) = DeviceConditions(network, battery, charging, DataUsage(now.toLocalDate(), today, month), now, active)

    private fun decide(settings: ResourceSettings, d: DeviceConditions, previous: ResourceDecision? = null) =
        ResourcePolicy.decide(settings, d, previous)

    private fun assertDecision(action: Action, reasons: Set<PauseReason>, got: ResourceDecision) {
        assertEquals(ResourceDecision(action, reasons), got)
    }

    @Test
    fun servesWhenNothingLimits() {
        assertEquals(ResourceDecision.SERVE, decide(open, device(network = NetworkType.CELLULAR, battery = 3)))
        assertEquals(ResourceDecision.SERVE, decide(ResourceSettings(), device()))
        assertEquals(NodeState.SERVING, ResourceDecision.SERVE.state)
    }

    @Test
    fun wifiOnlyAcceptsWifiAndEthernetAndPausesAtOnceOtherwise() {
        val s = open.copy(wifiOnly = true)
        assertEquals(Action.SERVE, decide(s, device(network = NetworkType.WIFI)).action)
        assertEquals(Action.SERVE, decide(s, device(network = NetworkType.ETHERNET)).action)
        // A hard reason: live streams would spend mobile data, so pause even with streams open.
        assertDecision(Action.PAUSE, setOf(NOT_ON_WIFI), decide(s, device(network = NetworkType.CELLULAR, active = 5)))
        assertDecision(Action.PAUSE, setOf(NOT_ON_WIFI), decide(s, device(network = NetworkType.UNKNOWN)))
        assertEquals(Action.SERVE, decide(open, device(network = NetworkType.CELLULAR)).action)
    }

    @Test
    fun chargingOnlyDrainsThenPauses() {
        val s = open.copy(chargingOnly = true)
        assertEquals(Action.SERVE, decide(s, device(charging = true)).action)
        assertDecision(Action.DRAIN, setOf(NOT_CHARGING), decide(s, device(charging = false, active = 2)))
        assertDecision(Action.PAUSE, setOf(NOT_CHARGING), decide(s, device(charging = false, active = 0)))
        // No battery at all (a TV box on mains) counts as powered.
        assertEquals(Action.SERVE, decide(s, device(battery = null, charging = false)).action)
    }

    @Test
    fun batteryFloorAppliesWhileNotChargingWithHysteresis() {
        val s = open.copy(batteryFloorPct = 30)
        assertEquals(Action.SERVE, decide(s, device(battery = 30)).action)
        val low = decide(s, device(battery = 29, active = 1))
        assertDecision(Action.DRAIN, setOf(BATTERY_LOW), low)
        assertEquals(NodeState.DRAINING, low.state)
        assertDecision(Action.PAUSE, setOf(BATTERY_LOW), decide(s, device(battery = 29)))
        // Charging lifts the floor: the battery is not being run down.
        assertEquals(Action.SERVE, decide(s, device(battery = 10, charging = true)).action)
        // Once low, serving resumes only 5 points above the floor, so 29 ↔ 30 does not flap.
        val paused = decide(s, device(battery = 29))
        assertEquals(Action.PAUSE, decide(s, device(battery = 30), paused).action)
        assertEquals(Action.PAUSE, decide(s, device(battery = 34), paused).action)
        assertEquals(Action.SERVE, decide(s, device(battery = 35), paused).action)
        // Without the battery reason in the previous decision there is no hysteresis.
        assertEquals(Action.SERVE, decide(s, device(battery = 30), ResourceDecision(Action.PAUSE, setOf(NOT_ON_WIFI))).action)
        // No battery: no floor.
        assertEquals(Action.SERVE, decide(s, device(battery = null)).action)
    }

    @Test
    fun dataCapsPauseAtOnce() {
        val s = open.copy(dailyCapBytes = 1_000, monthlyCapBytes = 10_000)
        assertEquals(Action.SERVE, decide(s, device(today = 999, month = 9_999)).action)
        assertDecision(Action.PAUSE, setOf(DAILY_CAP), decide(s, device(today = 1_000, month = 5_000, active = 3)))
        assertDecision(Action.PAUSE, setOf(MONTHLY_CAP), decide(s, device(today = 0, month = 10_000, active = 3)))
        assertDecision(Action.PAUSE, setOf(DAILY_CAP, MONTHLY_CAP), decide(s, device(today = 2_000, month = 20_000)))
        // A cap of zero means: never serve.
        assertEquals(Action.PAUSE, decide(open.copy(dailyCapBytes = 0), device()).action)
    }

    @Test
    fun scheduleWindowsIncludingOvernight() {
        val weekdays = setOf(DayOfWeek.MONDAY, DayOfWeek.TUESDAY, DayOfWeek.WEDNESDAY, DayOfWeek.THURSDAY, DayOfWeek.FRIDAY)
        val nights = Schedule(listOf(Schedule.Window(weekdays, LocalTime.of(22, 0), LocalTime.of(7, 0))))
        fun at(day: Int, h: Int, m: Int = 0) = LocalDateTime.of(2025, 11, day, h, m) // 24 Nov 2025 is a Monday
        assertTrue(nights.allows(at(26, 22, 0))) // Wednesday night, from its start
        assertTrue(nights.allows(at(27, 6, 59))) // …into Thursday morning
        assertFalse(nights.allows(at(27, 7, 0))) // end is exclusive
        assertFalse(nights.allows(at(26, 21, 59)))
        assertTrue(nights.allows(at(29, 3, 0))) // Saturday 03:00 is still Friday's night
        assertFalse(nights.allows(at(29, 22, 0))) // Saturday evening is not listed
        assertFalse(nights.allows(at(24, 3, 0))) // Monday 03:00 would be Sunday's night

        val office = Schedule(listOf(Schedule.Window(Schedule.EVERY_DAY, LocalTime.of(9, 0), LocalTime.of(17, 0))))
        assertTrue(office.allows(at(26, 9, 0)))
        assertFalse(office.allows(at(26, 17, 0)))
        val fullDay = Schedule(listOf(Schedule.Window(setOf(DayOfWeek.SUNDAY), LocalTime.of(6, 0), LocalTime.of(6, 0))))
        assertTrue(fullDay.allows(at(30, 6, 0)))
        assertTrue(fullDay.allows(at(30, 23, 59)))
        assertTrue(fullDay.allows(LocalDateTime.of(2025, 12, 1, 5, 59)))
        assertFalse(fullDay.allows(LocalDateTime.of(2025, 12, 1, 6, 0)))
        assertTrue(Schedule.ALWAYS.allows(at(26, 3)))

        val s = open.copy(schedule = office)
        assertDecision(Action.DRAIN, setOf(OUTSIDE_SCHEDULE), decide(s, device(now = at(26, 18), active = 1)))
        assertDecision(Action.PAUSE, setOf(OUTSIDE_SCHEDULE), decide(s, device(now = at(26, 18))))
        assertEquals(Action.SERVE, decide(s, device(now = at(26, 10))).action)
    }

    @Test
    fun hardReasonsWinOverSoftOnes() {
        val s = ResourceSettings(wifiOnly = true, chargingOnly = true, batteryFloorPct = 50, dailyCapBytes = 10)
        val d = decide(s, device(network = NetworkType.CELLULAR, battery = 20, today = 10, active = 4))
        assertDecision(Action.PAUSE, setOf(NOT_ON_WIFI, DAILY_CAP, NOT_CHARGING, BATTERY_LOW), d)
        assertEquals(NodeState.PAUSED, d.state)
        assertEquals("not on an unmetered network; daily data cap reached; not charging; battery below the owner's floor", d.describe())
    }

    @Test
    fun streamAdmission() {
        val s = open.copy(maxStreams = 2)
        assertNull(ResourcePolicy.admitStream(s, ResourceDecision.SERVE, 1))
        assertEquals(OpenErrReason.NODE_BUSY, ResourcePolicy.admitStream(s, ResourceDecision.SERVE, 2))
        val draining = ResourceDecision(Action.DRAIN, setOf(BATTERY_LOW))
        assertEquals(OpenErrReason.DRAINING, ResourcePolicy.admitStream(s, draining, 0))
        assertEquals(OpenErrReason.NODE_BUSY, ResourcePolicy.admitStream(open.copy(maxStreams = 0), ResourceDecision.SERVE, 0))
    }

    @Test
    fun heartbeatReportsStateAndLimits() {
        val s = ResourceSettings(wifiOnly = true, dailyCapBytes = 5_000_000_000, monthlyCapBytes = 100_000_000_000, maxStreams = 32)
        val d = device(network = NetworkType.CELLULAR, battery = 87, charging = true, today = 123, month = 456, active = 3)
        val decision = decide(s, d)
        val hb = ResourcePolicy.heartbeat(7, s, decision, d, uptimeS = 86_400)
        assertEquals(NodeState.PAUSED, hb.state)
        assertEquals(87, hb.batteryPct)
        assertEquals(true, hb.charging)
        assertEquals(NetworkType.CELLULAR, hb.network)
        assertEquals(123L, hb.bytesToday)
        assertEquals(456L, hb.bytesMonth)
        assertEquals(32L, hb.maxStreams)
        assertEquals(5_000_000_000L, hb.dailyCap)
        assertEquals(100_000_000_000L, hb.monthlyCap)
        assertEquals(3L, hb.activeStreams)
        assertEquals(86_400L, hb.uptimeS)
        // Paused: the first (hard) reason goes to the server as HEARTBEAT tag 13.
        assertEquals(PauseCode.NOT_ON_WIFI, hb.pauseReason)
        assertEquals(DecodeResult.Ok(hb), FrameCodec.decode(FrameCodec.encode(hb)))
        // A device on mains reports neither battery nor charging ("absent = mains").
        val mains = ResourcePolicy.heartbeat(8, open, ResourceDecision.SERVE, device(battery = null), 1)
        assertNull(mains.batteryPct)
        assertNull(mains.charging)
        assertNull(mains.dailyCap)
        assertNull("a serving node sends no pause reason", mains.pauseReason)
    }

    @Test
    fun usageRollsOverByDayAndMonthPeriod() {
        val u = DataUsage(LocalDate.of(2025, 11, 26), 100, 1_000).plus(50)
        assertEquals(DataUsage(LocalDate.of(2025, 11, 26), 150, 1_050), u)
        assertEquals(u, u.rolledTo(LocalDate.of(2025, 11, 26), 1))
        assertEquals(DataUsage(LocalDate.of(2025, 11, 27), 0, 1_050), u.rolledTo(LocalDate.of(2025, 11, 27), 1))
        assertEquals(DataUsage(LocalDate.of(2025, 12, 1), 0, 0), u.rolledTo(LocalDate.of(2025, 12, 1), 1))
        // A plan that resets on the 15th: 26 Nov → 14 Dec is one period, 15 Dec a new one.
        assertEquals(1_050L, u.rolledTo(LocalDate.of(2025, 12, 14), 15).bytesMonth)
        assertEquals(0L, u.rolledTo(LocalDate.of(2025, 12, 15), 15).bytesMonth)
        // A start day past the end of a short month is that month's last day.
        assertEquals(LocalDate.of(2026, 2, 28), DataUsage.monthPeriodStart(LocalDate.of(2026, 3, 5), 31))
        assertEquals(LocalDate.of(2026, 2, 28), DataUsage.monthPeriodStart(LocalDate.of(2026, 2, 28), 31))
        assertEquals(LocalDate.of(2026, 1, 31), DataUsage.monthPeriodStart(LocalDate.of(2026, 2, 27), 31))
        // Far jumps (the phone was off for a month) reset both.
        assertEquals(0L, u.rolledTo(LocalDate.of(2026, 11, 26), 1).bytesMonth)
    }

    @Test
    fun settingsAreValidated() {
        for (bad in listOf<() -> Any>(
            { ResourceSettings(batteryFloorPct = 101) },
            { ResourceSettings(dailyCapBytes = -1) },
            { ResourceSettings(monthStartDay = 0) },
            { ResourceSettings(maxStreams = -1) },
            { device(battery = 101) },
        )) {
            try {
                bad()
                throw AssertionError("accepted")
            } catch (expected: IllegalArgumentException) {
            }
        }
    }

    @Test
    fun wifiOnlyMeansUnmeteredAndNotRoamingSoAHotspotDoesNotCount() {
        val s = ResourceSettings(wifiOnly = true, batteryFloorPct = null)
        val home = device()
        assertDecision(Action.SERVE, emptySet(), decide(s, home))
        assertDecision(Action.PAUSE, setOf(NOT_ON_WIFI), decide(s, home.copy(metered = true)))
        assertDecision(Action.PAUSE, setOf(NOT_ON_WIFI), decide(s, home.copy(roaming = true)))
        // An unmetered cellular plan is as good as Wi-Fi to the owner's wallet.
        assertDecision(Action.SERVE, emptySet(), decide(s, device(network = NetworkType.CELLULAR).copy(metered = false)))
        // Without the platform's answer, only Wi-Fi and Ethernet are unmetered.
        assertTrue(device(network = NetworkType.CELLULAR).metered)
        assertTrue(device(network = NetworkType.UNKNOWN).metered)
        assertFalse(device(network = NetworkType.ETHERNET).metered)
        // Off, metered networks are fine.
        assertDecision(Action.SERVE, emptySet(), decide(open, home.copy(metered = true, roaming = true)))
    }

    @Test
    fun dataSaverPausesOnMeteredNetworksAndBatterySaverDrainsOnBattery() {
        val metered = device(network = NetworkType.CELLULAR, active = 2)
        assertDecision(Action.PAUSE, setOf(PauseReason.DATA_SAVER), decide(open, metered.copy(dataSaver = true)))
        assertDecision(Action.SERVE, emptySet(), decide(open, device(active = 2).copy(dataSaver = true)))
        assertDecision(Action.DRAIN, setOf(PauseReason.BATTERY_SAVER), decide(open, device(active = 2).copy(batterySaver = true)))
        assertDecision(Action.PAUSE, setOf(PauseReason.BATTERY_SAVER), decide(open, device(active = 0).copy(batterySaver = true)))
        assertDecision(Action.SERVE, emptySet(), decide(open, device(charging = true).copy(batterySaver = true)))
        assertTrue(PauseReason.DATA_SAVER.hard)
        assertFalse(PauseReason.BATTERY_SAVER.hard)
        // HEARTBEAT pause_reason 8 data_saver and 9 battery_saver.
        assertEquals(PauseCode.DATA_SAVER, PauseReason.DATA_SAVER.code)
        assertEquals(8, PauseReason.DATA_SAVER.code.wire)
        assertEquals(PauseCode.BATTERY_SAVER, PauseReason.BATTERY_SAVER.code)
        assertEquals(9, PauseReason.BATTERY_SAVER.code.wire)
    }

    @Test
    fun theOwnersPauseIsHardComesFirstAndIsReportedAsByOwner() {
        val s = open.copy(paused = true, dailyCapBytes = 10)
        val d = decide(s, device(active = 3, today = 10))
        assertDecision(Action.PAUSE, setOf(PauseReason.BY_OWNER, DAILY_CAP), d)
        val hb = ResourcePolicy.heartbeat(1, s, d, device(active = 3, today = 10), 5)
        assertEquals(PauseCode.BY_OWNER, hb.pauseReason)
        assertEquals(OpenErrReason.DRAINING, ResourcePolicy.admitStream(s, d, 0))
    }
}
