package net.traffix.core.text

import java.io.File
import javax.xml.parsers.DocumentBuilderFactory
import net.traffix.core.agent.AgentError
import net.traffix.core.agent.ControlFailure
import net.traffix.core.agent.Phase
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.SettingsField
import net.traffix.core.policy.SettingsProblem
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.policy.PauseReason
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.w3c.dom.Element

/** Every text key the core hands the app has its string in the app's resources. */
class UiTextTest {
    private fun stringsXml(): File {
        System.getProperty("traffix.strings")?.let { return File(it) }
        var dir: File? = File("").absoluteFile
        while (dir != null) {
            val f = File(dir, "android/app/src/main/res/values/strings.xml")
            if (f.isFile) return f
            val g = File(dir, "app/src/main/res/values/strings.xml")
            if (g.isFile) return g
            dir = dir.parentFile
        }
        throw AssertionError("app/src/main/res/values/strings.xml not found; set -Dtraffix.strings")
    }

    private fun strings(): Map<String, String> {
        val doc = DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(stringsXml())
        val nodes = doc.getElementsByTagName("string")
        return (0 until nodes.length).associate { i -> (nodes.item(i) as Element).let { it.getAttribute("name") to it.textContent } }
    }

    @Test
    fun everyKeyHasAString() {
        val have = strings()
        val missing = missing(have)
        assertEquals("keys without a string in strings.xml: $missing", emptyList<UiText>(), missing)
        for (t in UiText.values()) assertTrue("${t.resName} is empty", have.getValue(t.resName).isNotBlank())
        assertEquals("resource names are unique", UiText.values().size, UiText.values().map { it.resName }.toSet().size)
    }

    @Test
    fun everyBatteryGuideHasItsSteps() {
        val have = strings()
        val missing = net.traffix.core.device.OemGuide.values().filter { it.resName !in have }
        assertEquals(emptyList<Any>(), missing)
    }

    @Test
    fun everyPhaseAndReasonHasAKey() {
        assertEquals(Phase.values().size, Phase.values().map { UiText.of(it) }.toSet().size)
        assertEquals(PauseReason.values().size, PauseReason.values().map { UiText.of(it) }.toSet().size)
    }

    @Test
    fun everyTypedProblemHasItsOwnKey() {
        fun <T> distinct(values: Array<T>, key: (T) -> UiText) = assertEquals(values.toList().toString(), values.size, values.map(key).toSet().size)
        distinct(AgentError.Kind.values().filter { it != AgentError.Kind.SERVER_REFUSED }.toTypedArray()) { UiText.of(AgentError(it)) }
        distinct(ErrorCode.values()) { UiText.of(AgentError(AgentError.Kind.SERVER_REFUSED, it)) }
        distinct(ControlFailure.values()) { UiText.of(it) }
        distinct(PairLink.Problem.values()) { UiText.of(it) }
        distinct(SettingsField.values()) { UiText.of(it) }
        distinct(SettingsProblem.Kind.values()) { UiText.of(it) }
        assertEquals(listOf("12"), UiText.args(AgentError(AgentError.Kind.SERVER_SILENT, detail = "12")))
    }

    /** `%1$s`, `%2$d` …: the distinct argument numbers a resource string uses. */
    private fun argsOf(text: String): Set<Int> = Regex("""%(\d+)\$""").findAll(text).map { it.groupValues[1].toInt() }.toSet()

    @Test
    fun everyStringTakesExactlyItsKeysArguments() {
        val have = strings()
        val wrong =
            UiText.values().filter { t ->
                val text = have[t.resName] ?: return@filter false
                // Android's getString needs positional arguments once there are any: no bare %s.
                argsOf(text) != (1..t.args).toSet() || Regex("""%[sd]""").containsMatchIn(text)
            }
        assertEquals("keys whose string has other arguments than declared", emptyList<UiText>(), wrong)
        assertEquals(setOf(1, 2), argsOf("%1\$s: “%2\$s” is not a whole number"))
    }

    @Test
    fun theCheckNamesAKeyWhoseStringIsMissing() {
        val have = strings()
        assertEquals(listOf(UiText.PHASE_SERVING), missing(have - "phase_serving"))
    }

    private fun missing(have: Map<String, String>) = UiText.values().filter { it.resName !in have }
}
