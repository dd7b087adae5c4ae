package net.traffix.node.ui

import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.foundation.text.KeyboardOptions
import com.journeyapps.barcodescanner.ScanContract
import com.journeyapps.barcodescanner.ScanOptions
import net.traffix.core.onboarding.Consent
import net.traffix.core.pairing.PairLink
import net.traffix.node.NodeService
import net.traffix.node.R
import net.traffix.node.SettingsStore
import net.traffix.node.Texts

/**
 * Pairing: scan the dashboard's QR code or paste its link. The core's parser judges the link
 * and its reasons are shown as they are; a good link is stored and the node started, and the
 * agent pairs on its first connection (PAIR with a fresh Keystore key and its attestation).
 */
@Composable
internal fun PairScreen(store: SettingsStore, openedLink: String?, repairing: Boolean, onDone: () -> Unit) {
    val context = LocalContext.current
    var text by rememberSaveable { mutableStateOf(openedLink ?: "") }
    var error by rememberSaveable { mutableStateOf<String?>(null) }
    // A link that opened the app is only filled in: pairing is always the owner's tap.
    LaunchedEffect(openedLink) {
        if (openedLink != null) {
            text = openedLink
            error = null
        }
    }

    // A good link waiting for the owner's consent (the disclosure comes before any sharing).
    var pending by rememberSaveable { mutableStateOf<String?>(null) }

    fun accept(value: String, link: PairLink) {
        store.acceptConsent(Consent.VERSION, Consent.termsUrl(value))
        store.savePairLink(link)
        store.setPaused(false)
        NodeService.start(context)
        pending = null
        onDone()
    }

    fun pair(value: String) {
        when (val r = PairLink.parse(value)) {
            is PairLink.Result.Invalid -> error = Texts.pairProblem(context, r)
            is PairLink.Result.Ok -> pending = value
        }
    }

    val waiting = pending?.let { p -> (PairLink.parse(p) as? PairLink.Result.Ok)?.link?.let { p to it } }
    if (waiting != null) {
        val (value, link) = waiting
        // Every pairing shows the disclosure with that link's operator terms: a new operator may
        // have other terms.
        ConsentScreen(
            server = link.host,
            termsUrl = Consent.termsUrl(value),
            onAgree = { accept(value, link) },
            onDecline = { pending = null },
        )
        return
    }

    // zxing-android-embedded's CaptureActivity asks for the camera permission itself.
    val scan =
        rememberLauncherForActivityResult(ScanContract()) { result ->
            val contents = result.contents ?: return@rememberLauncherForActivityResult // cancelled
            text = contents
            pair(contents)
        }
    val prompt = stringResource(R.string.pair_scan_prompt)

    ScreenColumn {
        Text(stringResource(R.string.pair_title), style = MaterialTheme.typography.headlineSmall)
        Text(stringResource(R.string.pair_explain), style = MaterialTheme.typography.bodyMedium)
        if (repairing) {
            Text(stringResource(R.string.pair_replaces), color = MaterialTheme.colorScheme.error)
        }
        Button(
            onClick = {
                scan.launch(
                    ScanOptions()
                        .setDesiredBarcodeFormats(ScanOptions.QR_CODE)
                        .setPrompt(prompt)
                        .setBeepEnabled(false)
                        .setOrientationLocked(false),
                )
            },
            modifier = Modifier.fillMaxWidth(),
        ) { Text(stringResource(R.string.pair_scan)) }
        OutlinedTextField(
            value = text,
            onValueChange = {
                text = it
                error = null
            },
            label = { Text(stringResource(R.string.pair_link)) },
            placeholder = { Text("traffix://pair?server=…&pin=…&code=…") },
            isError = error != null,
            supportingText = { error?.let { Text(it) } },
            keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Uri),
            minLines = 2,
            modifier = Modifier.fillMaxWidth(),
        )
        Button(onClick = { pair(text) }, enabled = text.isNotBlank(), modifier = Modifier.fillMaxWidth()) {
            Text(stringResource(R.string.pair_action))
        }
        if (repairing) {
            OutlinedButton(onClick = onDone, modifier = Modifier.fillMaxWidth()) { Text(stringResource(R.string.action_cancel)) }
        }
    }
}
