package net.traffix.core.usage

import java.time.LocalDate
import net.traffix.core.policy.DataUsage
import org.junit.Assert.assertEquals
import org.junit.Test

/** The caps as the radio counts them, from the app's UID counters. */
class RadioUsageMeterTest {
    private val d1 = LocalDate.of(2026, 3, 14)

    private fun meter(start: LocalDate = d1) = RadioUsageMeter(RadioUsageMeter.MeterState(DataUsage(start)))

    @Test
    fun countsBothDirectionsFromTheFirstReadingOn() {
        val m = meter()
        assertEquals(DataUsage(d1, 0, 0), m.sample(5_000, 1_000, bootId = 7, date = d1, monthStartDay = 1))
        assertEquals(DataUsage(d1, 3_000, 3_000), m.sample(7_000, 2_000, 7, d1, 1))
        assertEquals(DataUsage(d1, 3_500, 3_500), m.sample(7_100, 2_400, 7, d1, 1))
    }

    @Test
    fun aRebootCountsEverythingSinceBootAndABackwardCounterIsANewBase() {
        val m = meter()
        m.sample(10_000, 10_000, 7, d1, 1)
        m.sample(11_000, 10_000, 7, d1, 1) // +1,000
        assertEquals("rebooted: 600 since boot", 1_600L, m.sample(500, 100, 8, d1, 1).bytesToday)
        assertEquals("a counter reset within one boot is no negative delta", 1_600L, m.sample(100, 0, 8, d1, 1).bytesToday)
        assertEquals(1_650L, m.sample(150, 0, 8, d1, 1).bytesToday)
    }

    @Test
    fun unsupportedCountersChangeNothing() {
        val m = meter()
        m.sample(1_000, 1_000, 1, d1, 1)
        assertEquals(0L, m.sample(-1, -1, 1, d1, 1).bytesToday)
        assertEquals(500L, m.sample(1_500, 1_000, 1, d1, 1).bytesToday)
    }

    @Test
    fun theDayAndTheMonthPeriodRollOverBeforeADeltaIsAdded() {
        val m = meter(LocalDate.of(2026, 3, 13))
        m.sample(0, 0, 1, LocalDate.of(2026, 3, 13), 14)
        m.sample(4_000, 0, 1, LocalDate.of(2026, 3, 13), 14)
        // 14 March starts a new month period (the owner's plan resets on the 14th).
        assertEquals(DataUsage(d1, 1_000, 1_000), m.sample(5_000, 0, 1, d1, 14))
        val d2 = d1.plusDays(1)
        assertEquals(DataUsage(d2, 2_000, 3_000), m.sample(7_000, 0, 1, d2, 14))
        assertEquals(DataUsage(d2.plusDays(1), 0, 3_000), m.usage(d2.plusDays(1), 14))
    }

    @Test
    fun stateSurvivesARestartOfTheApp() {
        val m = meter()
        m.sample(1_000, 0, 3, d1, 1)
        m.sample(2_000, 0, 3, d1, 1)
        val again = RadioUsageMeter(m.state) // persisted and read back
        assertEquals("bytes moved while the app was down (same boot) still count", 2_000L, again.sample(3_000, 0, 3, d1, 1).bytesToday)
    }
}
