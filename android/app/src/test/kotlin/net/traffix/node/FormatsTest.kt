package net.traffix.node

import java.time.DayOfWeek
import java.time.LocalTime
import java.util.Locale
import net.traffix.core.policy.Schedule
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Test

class FormatsTest {
    @Test
    fun moneyIsExactFromMicros() {
        assertEquals("0.00 EUR", Formats.money(0, "EUR"))
        assertEquals("1.00 EUR", Formats.money(1_000_000, "EUR"))
        assertEquals("0.10", Formats.money(100_000, null))
        assertEquals("0.000001 USD", Formats.money(1, "USD"))
        assertEquals("12.345678 USD", Formats.money(12_345_678, "USD"))
        assertEquals("0.125 USD", Formats.money(125_000, "USD"))
        // Far past what a double holds exactly.
        assertEquals("9223372036854.775807 X", Formats.money(Long.MAX_VALUE, "X"))
    }

    @Test
    fun bytesInDecimalUnits() {
        assertEquals("0 B", Formats.bytes(0))
        assertEquals("999 B", Formats.bytes(999))
        assertEquals("1.00 kB", Formats.bytes(1000))
        assertEquals("1.50 kB", Formats.bytes(1500))
        assertEquals("12.3 MB", Formats.bytes(12_345_678))
        assertEquals("999 MB", Formats.bytes(999_000_000))
        assertEquals("128 GB", Formats.bytes(128_000_000_000))
        assertEquals("9.22 EB", Formats.bytes(Long.MAX_VALUE))
    }

    @Test
    fun capsParseAndPrint() {
        assertNull(Formats.parseCap("  ", SizeUnit.GB))
        assertEquals(1_500_000_000L, Formats.parseCap("1.5", SizeUnit.GB))
        assertEquals(1_500_000_000L, Formats.parseCap("1,5", SizeUnit.GB))
        assertEquals(200_000_000L, Formats.parseCap("200", SizeUnit.MB))
        assertEquals(-1_000_000L, Formats.parseCap("-1", SizeUnit.MB)) // the core's require rejects it
        assertThrows(IllegalArgumentException::class.java) { Formats.parseCap("lots", SizeUnit.MB) }
        assertThrows(IllegalArgumentException::class.java) { Formats.parseCap("1e30", SizeUnit.GB) }
        assertEquals("" to SizeUnit.GB, Formats.capText(null))
        assertEquals("1.5" to SizeUnit.GB, Formats.capText(1_500_000_000L))
        assertEquals("200" to SizeUnit.MB, Formats.capText(200_000_000L))
        assertEquals("0" to SizeUnit.MB, Formats.capText(0))
    }

    @Test
    fun times() {
        assertEquals(LocalTime.of(7, 5), Formats.parseTime("7:05"))
        assertEquals(LocalTime.of(22, 0), Formats.parseTime(" 22:00 "))
        assertNull(Formats.parseTime("24:00"))
        assertNull(Formats.parseTime("7:5"))
        assertNull(Formats.parseTime("seven"))
        assertEquals("07:05", Formats.time(LocalTime.of(7, 5)))
    }

    @Test
    fun scheduleRoundTrips() {
        val s =
            Schedule(
                listOf(
                    Schedule.Window(setOf(DayOfWeek.FRIDAY, DayOfWeek.MONDAY), LocalTime.of(22, 0), LocalTime.of(7, 0)),
                    Schedule.Window(Schedule.EVERY_DAY, LocalTime.MIDNIGHT, LocalTime.MIDNIGHT),
                ),
            )
        val text = Formats.encodeSchedule(s)
        assertEquals(
            "MONDAY,FRIDAY@22:00-07:00;MONDAY,TUESDAY,WEDNESDAY,THURSDAY,FRIDAY,SATURDAY,SUNDAY@00:00-00:00",
            text,
        )
        assertEquals(s, Formats.decodeSchedule(text))
        assertEquals(Schedule.ALWAYS, Formats.decodeSchedule(""))
        assertThrows(IllegalArgumentException::class.java) { Formats.decodeSchedule("MONDAY") }
        assertThrows(IllegalArgumentException::class.java) { Formats.decodeSchedule("MOONDAY@01:00-02:00") }
        assertThrows(IllegalArgumentException::class.java) { Formats.decodeSchedule("MONDAY@01:00-25:00") }
    }

    @Test
    fun dayNames() {
        assertEquals("every day", Formats.days(Schedule.EVERY_DAY, Locale.ENGLISH, "every day"))
        assertEquals("Mon, Sat", Formats.days(setOf(DayOfWeek.SATURDAY, DayOfWeek.MONDAY), Locale.ENGLISH, "every day"))
    }
}
