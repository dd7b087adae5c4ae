package net.traffix.node

import java.math.BigDecimal
import java.math.RoundingMode
import java.text.DecimalFormat
import java.text.NumberFormat
import java.time.DayOfWeek
import java.time.LocalTime
import java.time.format.TextStyle
import java.util.Currency
import java.util.Locale
import net.traffix.core.policy.Schedule
import net.traffix.core.policy.SizeUnit

/*
 * Pure text ↔ value conversions shared by the notification, the screens and the settings store:
 * money from integer micro-units and byte sizes in the owner's number format, the schedule's
 * stored form. No android.* import, so FormatsTest runs on a plain JVM. Words (units, labels)
 * come from string resources (Texts); numbers are formatted here for the given locale.
 */

/** What is shown for a value not known yet (earnings before the first HEARTBEAT_ACK, no RTT sample). */
const val UNKNOWN = "—"

/** Decimal byte units; the app words each through a string resource (`size_*`, Texts.bytes). */
enum class ByteUnit { B, KB, MB, GB, TB, PB, EB }

object Formats {
    private const val MICROS_SCALE = 6

    /**
     * An amount of integer micro-units (1 000 000 = 1.00) exactly, in [locale]'s number format:
     * at least two decimals, more only when the amount has them (0.125 stays 0.125, never
     * rounded). An ISO 4217 [currency] is shown as [locale] shows that currency (symbol or code,
     * before or after); any other code follows the number.
     */
    fun money(micros: Long, currency: String?, locale: Locale): String {
        val exact = BigDecimal.valueOf(micros, MICROS_SCALE).stripTrailingZeros()
        val decimals = maxOf(2, exact.scale())
        val iso =
            currency?.takeIf { it.length == 3 }?.let {
                try {
                    Currency.getInstance(it)
                } catch (e: IllegalArgumentException) {
                    null
                }
            }
        val format =
            if (iso != null) {
                NumberFormat.getCurrencyInstance(locale).also { it.currency = iso }
            } else {
                NumberFormat.getNumberInstance(locale)
            }
        format.minimumFractionDigits = decimals
        format.maximumFractionDigits = decimals
        // Raising the scale never rounds; the check makes sure nothing ever does.
        (format as? DecimalFormat)?.roundingMode = RoundingMode.UNNECESSARY
        val text = format.format(exact)
        return if (iso == null && !currency.isNullOrEmpty()) "$text $currency" else text
    }

    /**
     * Bytes in decimal units with three significant digits, the number in [locale]'s format:
     * 999 B, 1.50 kB, 12.3 MB, 128 GB (the unit's word comes from the resources).
     */
    fun size(n: Long, locale: Locale): Pair<String, ByteUnit> {
        val numbers = NumberFormat.getNumberInstance(locale)
        if (n < 1000) return numbers.format(n) to ByteUnit.B
        var unit = 1
        var div = 1000L
        while (unit < ByteUnit.values().size - 1 && n / div >= 1000) {
            div *= 1000
            unit++
        }
        val q = BigDecimal.valueOf(n).divide(BigDecimal.valueOf(div))
        val decimals = if (q < BigDecimal.TEN) 2 else if (q < BigDecimal.valueOf(100)) 1 else 0
        numbers.minimumFractionDigits = decimals
        numbers.maximumFractionDigits = decimals
        return numbers.format(q.setScale(decimals, RoundingMode.HALF_UP)) to ByteUnit.values()[unit]
    }

    /** A stored cap as text in the largest unit that shows it exactly enough: GB from 1 GB up. */
    fun capText(bytes: Long?): Pair<String, SizeUnit> {
        if (bytes == null) return "" to SizeUnit.GB
        val unit = if (bytes >= SizeUnit.GB.bytes) SizeUnit.GB else SizeUnit.MB
        val value = BigDecimal.valueOf(bytes).divide(BigDecimal.valueOf(unit.bytes)).stripTrailingZeros()
        return value.toPlainString() to unit
    }

    /** `H:MM` or `HH:MM` (24-hour) → the time, else null. */
    fun parseTime(text: String): LocalTime? {
        val m = Regex("""(\d{1,2}):(\d{2})""").matchEntire(text.trim()) ?: return null
        val h = m.groupValues[1].toInt()
        val min = m.groupValues[2].toInt()
        return if (h in 0..23 && min in 0..59) LocalTime.of(h, min) else null
    }

    /** `HH:MM`. */
    fun time(t: LocalTime): String = "%02d:%02d".format(Locale.ROOT, t.hour, t.minute)

    /** Days in week order (Monday first) as short names, or [everyDay] when all seven are set. */
    fun days(days: Set<DayOfWeek>, locale: Locale, everyDay: String): String =
        if (days.containsAll(Schedule.EVERY_DAY)) {
            everyDay
        } else {
            DayOfWeek.values().filter { it in days }.joinToString(", ") { it.getDisplayName(TextStyle.SHORT, locale) }
        }

    // ---- the schedule's stored form: MONDAY,FRIDAY@22:00-07:00;SATURDAY@00:00-00:00 ----

    fun encodeSchedule(schedule: Schedule): String =
        schedule.windows.joinToString(";") { w ->
            DayOfWeek.values().filter { it in w.days }.joinToString(",") { it.name } + "@" + time(w.start) + "-" + time(w.end)
        }

    /** @throws IllegalArgumentException when [text] is not what [encodeSchedule] writes. */
    fun decodeSchedule(text: String): Schedule {
        if (text.isBlank()) return Schedule.ALWAYS
        val windows =
            text.split(';').map { part ->
                val at = part.indexOf('@')
                val dash = part.indexOf('-', at + 1)
                require(at > 0 && dash > at) { "bad schedule window “$part”" }
                val days = part.substring(0, at).split(',').map { DayOfWeek.valueOf(it) }.toSet()
                val start = parseTime(part.substring(at + 1, dash))
                val end = parseTime(part.substring(dash + 1))
                require(start != null && end != null) { "bad schedule window “$part”" }
                Schedule.Window(days, start, end)
            }
        return Schedule(windows)
    }
}
